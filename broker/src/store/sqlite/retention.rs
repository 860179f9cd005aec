//! Fleet secrets and retention on SQLite.

use sqlx::{Row, SqlitePool};

use crate::store::{RetentionCutoffs, RetentionReport, StoreError};

pub(super) async fn fleet_secret(
    pool: &SqlitePool,
    name: &str,
    candidate: &[u8],
    now: i64,
) -> Result<Vec<u8>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
    pool: &SqlitePool,
    c: &RetentionCutoffs,
) -> Result<RetentionReport, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let used_nonces = sqlx::query("DELETE FROM used_nonces WHERE expires_at <= $1")
        .bind(c.now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let enrollments =
        sqlx::query("DELETE FROM enrollments WHERE expires_at <= $1 OR consumed != 0")
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
    // Fold the write-ahead log back into the database file and truncate it,
    // so the freed pages are reused instead of the log growing.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await?;
    Ok(RetentionReport {
        used_nonces,
        enrollments,
        appraisals,
    })
}
