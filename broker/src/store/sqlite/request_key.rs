//! SQLite side of request keys. The writes are state changes the audit
//! writer applies with their leaves (`store::audit::StateChange`).

use sqlx::{Row, SqliteConnection};

use super::super::audit::ChangeRefused;
use super::super::request_key::RequestKeyRecord;
use super::super::{StoreError, TokenRecord};
use super::SqliteStore;

fn count(what: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}

/// Register (or replace) the host's request key.
pub(super) async fn upsert_request_key_in(
    tx: &mut SqliteConnection,
    k: &RequestKeyRecord,
) -> Result<Result<u64, ChangeRefused>, StoreError> {
    let done = sqlx::query(
        "INSERT INTO request_keys (host_id, key_name, key_public, reset_count, restart_count, certified_at)
         SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM hosts WHERE id = $1 AND status = 'trusted')
         ON CONFLICT (host_id) DO UPDATE SET key_name = excluded.key_name, key_public = excluded.key_public,
           reset_count = excluded.reset_count, restart_count = excluded.restart_count,
           certified_at = excluded.certified_at",
    )
    .bind(&k.host_id)
    .bind(&k.key_name)
    .bind(&k.key_public)
    .bind(i64::from(k.reset_count))
    .bind(i64::from(k.restart_count))
    .bind(k.certified_at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        Ok(Ok(0))
    } else {
        Ok(Err(ChangeRefused::HostNotFresh))
    }
}

/// Forget the host's request key (re-enrollment, reinstatement).
pub(super) async fn delete_request_key_in(
    tx: &mut SqliteConnection,
    host_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM request_keys WHERE host_id = $1")
        .bind(host_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Record a token minted on a signed request, only if — in this same
/// transaction — the host is trusted, attested at or after `fresh_since`,
/// and `key_name` is still its request key.
pub(super) async fn insert_signed_token_in(
    tx: &mut SqliteConnection,
    t: &TokenRecord,
    key_name: &[u8],
    fresh_since: i64,
) -> Result<Result<u64, ChangeRefused>, StoreError> {
    let key_ok = sqlx::query("SELECT 1 FROM request_keys WHERE host_id = $1 AND key_name = $2")
        .bind(&t.host_id)
        .bind(key_name)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !key_ok {
        return Ok(Err(ChangeRefused::RequestKeyUnknown));
    }
    let fresh = sqlx::query(
        "SELECT 1 FROM hosts WHERE id = $1 AND status = 'trusted' AND last_attested_at >= $2",
    )
    .bind(&t.host_id)
    .bind(fresh_since)
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    if !fresh {
        return Ok(Err(ChangeRefused::HostNotFresh));
    }
    SqliteStore::insert_token_in(tx, t, None).await?;
    Ok(Ok(0))
}

impl SqliteStore {
    pub async fn request_key(&self, host_id: &str) -> Result<Option<RequestKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM request_keys WHERE host_id = $1")
            .bind(host_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(RequestKeyRecord {
                host_id: r.try_get("host_id")?,
                key_name: r.try_get("key_name")?,
                key_public: r.try_get("key_public")?,
                reset_count: count("request_keys.reset_count", r.try_get("reset_count")?)?,
                restart_count: count("request_keys.restart_count", r.try_get("restart_count")?)?,
                certified_at: r.try_get("certified_at")?,
            })
        })
        .transpose()
    }
}
