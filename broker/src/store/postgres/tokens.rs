//! Token listings on PostgreSQL (see `store::token_query`).

use sqlx::PgConnection;

use super::rows::token_row;
use crate::store::{StoreError, TokenQuery, TokenState};

pub(super) async fn tokens(
    conn: &mut PgConnection,
    q: &TokenQuery<'_>,
) -> Result<Vec<TokenState>, StoreError> {
    let (after_iat, after_cti) = q.after_parts();
    sqlx::query(
        "SELECT * FROM tokens
         WHERE ($1::TEXT IS NULL OR host_id = $1)
           AND ($2::TEXT IS NULL OR workload = $2)
           AND ($3::TEXT IS NULL
                OR ($3 = 'revoked' AND revoked)
                OR ($3 = 'active' AND NOT revoked AND exp > $4)
                OR ($3 = 'expired' AND NOT revoked AND exp <= $4))
           AND ($5::BIGINT IS NULL OR iat < $5 OR (iat = $5 AND cti > $6::BYTEA))
         ORDER BY iat DESC, cti LIMIT $7",
    )
    .bind(q.host)
    .bind(q.workload)
    .bind(q.state_name())
    .bind(q.now)
    .bind(after_iat)
    .bind(after_cti)
    .bind(q.bounded_limit())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(token_row)
    .collect()
}

pub(super) async fn children(
    conn: &mut PgConnection,
    cti: &[u8],
    limit: u32,
) -> Result<Vec<TokenState>, StoreError> {
    sqlx::query("SELECT * FROM tokens WHERE parent_cti = $1 ORDER BY iat DESC, cti LIMIT $2")
        .bind(cti)
        .bind(i64::from(
            limit.clamp(1, crate::store::token_query::MAX_TOKEN_CHILDREN),
        ))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(token_row)
        .collect()
}
