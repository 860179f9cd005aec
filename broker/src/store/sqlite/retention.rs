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

#[cfg(test)]
mod tests {
    use super::super::tests::enrollment;
    use crate::store::audit::{AppraisalChange, Expect, NonceUse, StateChange};
    use crate::store::test_store::{apply, appraise, store};
    use crate::store::*;

    fn appraisal(host: &str, at: i64) -> AppraisalRecord {
        AppraisalRecord {
            host_id: host.into(),
            at,
            verdict: "affirming".into(),
            policy_id: "p".into(),
            policy_hash: "ab".into(),
            evidence_digest: vec![0; 32],
            failures: "[]".into(),
        }
    }

    #[tokio::test]
    async fn fleet_secret_is_created_once() {
        let (_d, s) = store().await;
        assert_eq!(s.fleet_secret("k", b"first", 1).await.unwrap(), b"first");
        assert_eq!(s.fleet_secret("k", b"second", 2).await.unwrap(), b"first");
        assert_eq!(s.fleet_secret("other", b"x", 2).await.unwrap(), b"x");
    }

    /// Finding 3: expired used nonces, expired or answered enrollments and
    /// old appraisals (not a host's latest) go; the rest stays.
    #[tokio::test]
    async fn finding3_retention_deletes_expired_and_old_rows() {
        let (_d, s) = store().await;
        s.insert_enrollment(&enrollment("expired", 50))
            .await
            .unwrap();
        s.insert_enrollment(&enrollment("answered", 500))
            .await
            .unwrap();
        s.insert_enrollment(&enrollment("pending", 500))
            .await
            .unwrap();
        s.take_enrollment("answered", 10).await.unwrap().unwrap();
        for (n, at) in [(b"old".as_slice(), 10), (b"young".as_slice(), 90)] {
            let change = AppraisalChange {
                nonce: NonceUse {
                    digest: n.to_vec(),
                    expires_at: at + 60,
                    at,
                },
                expect: Expect {
                    status: None,
                    clock: None,
                },
                appraisal: appraisal("gone", at),
                status: None,
                status_reason: None,
                register: None,
                clock: None,
                clock_refused: None,
                token: None,
                ima_cursor: None,
            };
            apply(&s, StateChange::Appraisal(Box::new(change)))
                .await
                .unwrap();
        }
        for at in [10, 20, 30] {
            appraise(&s, appraisal("h", at), HostStatus::Trusted, None, None)
                .await
                .unwrap();
        }
        let before = s.counts().await.unwrap();
        assert_eq!(
            (before.enrollments, before.used_nonces, before.appraisals),
            (3, 5, 5)
        );
        let report = s
            .delete_expired(&RetentionCutoffs {
                now: 100,
                appraisals_before: 25,
            })
            .await
            .unwrap();
        // Nonces expiring at 70, 70, 80, 90 go; 150 stays. Host `h` keeps
        // its appraisal at 30 (young) and `gone` its latest, at 90.
        assert_eq!(
            report,
            RetentionReport {
                used_nonces: 4,
                enrollments: 2,
                appraisals: 3,
            }
        );
        let after = s.counts().await.unwrap();
        assert_eq!(
            (after.enrollments, after.used_nonces, after.appraisals),
            (1, 1, 2)
        );
        assert_eq!(
            s.take_enrollment("pending", 100).await.unwrap(),
            Ok(enrollment("pending", 500))
        );
    }
}
