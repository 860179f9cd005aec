//! Fleet secrets and retention on PostgreSQL.

use sqlx::{PgPool, Row};

use crate::store::{RetentionCutoffs, RetentionReport, StoreError};

pub(super) async fn fleet_secret(
    pool: &PgPool,
    name: &str,
    candidate: &[u8],
    now: i64,
) -> Result<Vec<u8>, StoreError> {
    // Created once across brokers: the first insert wins (a racing one
    // waits for it, then does nothing), and everyone reads the winner.
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO fleet_secrets (name, secret, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(candidate)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let secret: Vec<u8> = sqlx::query("SELECT secret FROM fleet_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *tx)
        .await?
        .try_get("secret")?;
    tx.commit().await?;
    Ok(secret)
}

pub(super) async fn delete_expired(
    pool: &PgPool,
    c: &RetentionCutoffs,
) -> Result<RetentionReport, StoreError> {
    let mut tx = pool.begin().await?;
    let used_nonces = sqlx::query("DELETE FROM used_nonces WHERE expires_at <= $1")
        .bind(c.now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let enrollments = sqlx::query("DELETE FROM enrollments WHERE expires_at <= $1 OR consumed")
        .bind(c.now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let appraisals = sqlx::query(
        "DELETE FROM appraisals WHERE at < $1
           AND id NOT IN (SELECT MAX(id) FROM appraisals GROUP BY host_id)",
    )
    .bind(c.appraisals_before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    // Freed space is reclaimed by autovacuum.
    Ok(RetentionReport {
        used_nonces,
        enrollments,
        appraisals,
    })
}
