//! The embedded SQLite backend (WAL mode, one file).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{
    AppraisalRecord, Counts, EnrollmentProblem, EnrollmentRecord, HostRecord, HostStatus,
    NonceProblem, StoreError, TokenRecord,
};

mod appraisal;
mod audit;
mod governance;
mod request_key;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for backend code kept in other files (SEV-SNP hosts).
    /// The connection pool, for queries kept in sibling modules.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn insert_enrollment(&self, r: &EnrollmentRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollments (id, host_id, ek_public, ek_cert_digest, ak_public, ak_name, secret_digest, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.id)
        .bind(&r.host_id)
        .bind(&r.ek_public)
        .bind(&r.ek_cert_digest)
        .bind(&r.ak_public)
        .bind(&r.ak_name)
        .bind(&r.secret_digest)
        .bind(r.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn take_enrollment(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Result<EnrollmentRecord, EnrollmentProblem>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(
            "SELECT id, host_id, ek_public, ek_cert_digest, ak_public, ak_name, secret_digest, expires_at, consumed
             FROM enrollments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(EnrollmentProblem::Unknown));
        };
        if row.try_get::<i64, _>("consumed")? != 0 {
            return Ok(Err(EnrollmentProblem::AlreadyAnswered));
        }
        let rec = EnrollmentRecord {
            id: row.try_get("id")?,
            host_id: row.try_get("host_id")?,
            ek_public: row.try_get("ek_public")?,
            ek_cert_digest: row.try_get("ek_cert_digest")?,
            ak_public: row.try_get("ak_public")?,
            ak_name: row.try_get("ak_name")?,
            secret_digest: row.try_get("secret_digest")?,
            expires_at: row.try_get("expires_at")?,
        };
        // Consumed whatever the outcome: one answer per challenge.
        let done =
            sqlx::query("UPDATE enrollments SET consumed = 1 WHERE id = $1 AND consumed = 0")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        if done.rows_affected() != 1 {
            return Ok(Err(EnrollmentProblem::AlreadyAnswered));
        }
        if rec.expires_at <= now {
            return Ok(Err(EnrollmentProblem::Expired));
        }
        Ok(Ok(rec))
    }

    pub async fn upsert_host(&self, h: &HostRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::upsert_host_in(&mut conn, h).await
    }

    pub(super) async fn upsert_host_in(
        conn: &mut SqliteConnection,
        h: &HostRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hosts (id, status, ek_public, ek_cert_digest, ak_public, ak_name, enrolled_at, last_attested_at, last_failure, policy_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, ek_public = excluded.ek_public,
               ek_cert_digest = excluded.ek_cert_digest, ak_public = excluded.ak_public, ak_name = excluded.ak_name,
               enrolled_at = excluded.enrolled_at, last_attested_at = excluded.last_attested_at,
               last_failure = excluded.last_failure, policy_id = excluded.policy_id",
        )
        .bind(&h.id)
        .bind(h.status.as_str())
        .bind(&h.ek_public)
        .bind(&h.ek_cert_digest)
        .bind(&h.ak_public)
        .bind(&h.ak_name)
        .bind(h.enrolled_at)
        .bind(h.last_attested_at)
        .bind(&h.last_failure)
        .bind(&h.policy_id)
        .execute(&mut *conn)
        .await?;
        // A (re-)enrolled host has a new AK: its old certification is void.
        request_key::delete_request_key_in(conn, &h.id).await?;
        Ok(())
    }

    pub async fn host(&self, id: &str) -> Result<Option<HostRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM hosts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| host_from_row(&r)).transpose()
    }

    pub async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM hosts ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(host_from_row).collect()
    }

    pub async fn insert_nonce(
        &self,
        nonce: &[u8],
        host_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::insert_nonce_in(&mut conn, nonce, host_id, expires_at).await
    }

    pub(super) async fn insert_nonce_in(
        conn: &mut SqliteConnection,
        nonce: &[u8],
        host_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO nonces (nonce, host_id, expires_at) VALUES ($1, $2, $3)")
            .bind(nonce)
            .bind(host_id)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub async fn consume_nonce(
        &self,
        nonce: &[u8],
        host_id: &str,
        now: i64,
    ) -> Result<Result<(), NonceProblem>, StoreError> {
        let done = sqlx::query(
            "UPDATE nonces SET used = 1 WHERE nonce = $1 AND host_id = $2 AND used = 0 AND expires_at > $3",
        )
        .bind(nonce)
        .bind(host_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        // Classify the refusal for the client.
        let row = sqlx::query("SELECT host_id, expires_at, used FROM nonces WHERE nonce = $1")
            .bind(nonce)
            .fetch_optional(&self.pool)
            .await?;
        Ok(Err(match row {
            None => NonceProblem::Unknown,
            Some(r) if r.try_get::<String, _>("host_id")? != host_id => {
                NonceProblem::IssuedToAnotherHost
            }
            Some(r) if r.try_get::<i64, _>("used")? != 0 => NonceProblem::AlreadyUsed,
            Some(_) => NonceProblem::Expired,
        }))
    }

    pub async fn record_appraisal(
        &self,
        a: &AppraisalRecord,
        status: HostStatus,
        token: Option<&TokenRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::record_appraisal_in(&mut tx, a, status, token).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The statements of [`Self::record_appraisal`], inside the caller's
    /// transaction (the audit writer adds the decision's leaves to it).
    /// A failing host's tokens are revoked with it; returns how many.
    pub(super) async fn insert_appraisal_in(
        tx: &mut SqliteConnection,
        a: &AppraisalRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO appraisals (host_id, at, verdict, policy_id, policy_hash, evidence_digest, failures)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.host_id)
        .bind(a.at)
        .bind(&a.verdict)
        .bind(&a.policy_id)
        .bind(&a.policy_hash)
        .bind(&a.evidence_digest)
        .bind(&a.failures)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    pub(super) async fn record_appraisal_in(
        tx: &mut SqliteConnection,
        a: &AppraisalRecord,
        status: HostStatus,
        token: Option<&TokenRecord>,
    ) -> Result<u64, StoreError> {
        Self::insert_appraisal_in(tx, a).await?;
        let passed = status == HostStatus::Trusted;
        sqlx::query(
            "UPDATE hosts SET status = $2, policy_id = $3,
               last_attested_at = CASE WHEN $4 THEN $5 ELSE last_attested_at END,
               last_failure = CASE WHEN $4 THEN NULL ELSE $6 END
             WHERE id = $1 AND status <> 'revoked'",
        )
        .bind(&a.host_id)
        .bind(status.as_str())
        .bind(&a.policy_id)
        .bind(passed)
        .bind(a.at)
        .bind(&a.failures)
        .execute(&mut *tx)
        .await?;
        let revoked = if status == HostStatus::Failed {
            governance::revoke_host_tokens(tx, &a.host_id, "host_failed", a.at).await?
        } else {
            0
        };
        if let Some(t) = token {
            Self::insert_token_in(tx, t, None).await?;
        }
        Ok(revoked)
    }

    /// Record a token (`parent_cti`: the token it was derived from).
    pub(super) async fn insert_token_in(
        tx: &mut SqliteConnection,
        t: &TokenRecord,
        parent_cti: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (cti, host_id, workload, workload_digest, iat, exp, policy_id, token_digest, parent_cti)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&t.cti)
        .bind(&t.host_id)
        .bind(&t.workload)
        .bind(&t.workload_digest)
        .bind(t.iat)
        .bind(t.exp)
        .bind(&t.policy_id)
        .bind(&t.token_digest)
        .bind(parent_cti)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// A `tokens` row as a [`TokenRecord`].
    pub(super) fn token_record(r: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            cti: r.try_get("cti")?,
            host_id: r.try_get("host_id")?,
            workload: r.try_get("workload")?,
            workload_digest: r.try_get("workload_digest")?,
            iat: r.try_get("iat")?,
            exp: r.try_get("exp")?,
            policy_id: r.try_get("policy_id")?,
            token_digest: r.try_get("token_digest")?,
        })
    }

    pub async fn token(&self, cti: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE cti = $1")
            .bind(cti)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::token_record).transpose()
    }

    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM hosts) AS hosts, (SELECT COUNT(*) FROM enrollments) AS enrollments,
                    (SELECT COUNT(*) FROM nonces) AS nonces, (SELECT COUNT(*) FROM appraisals) AS appraisals,
                    (SELECT COUNT(*) FROM tokens) AS tokens",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            hosts: row.try_get("hosts")?,
            enrollments: row.try_get("enrollments")?,
            nonces: row.try_get("nonces")?,
            appraisals: row.try_get("appraisals")?,
            tokens: row.try_get("tokens")?,
        })
    }
}

fn host_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<HostRecord, StoreError> {
    Ok(HostRecord {
        id: r.try_get("id")?,
        status: super::parse_status(&r.try_get::<String, _>("status")?)?,
        ek_public: r.try_get("ek_public")?,
        ek_cert_digest: r.try_get("ek_cert_digest")?,
        ak_public: r.try_get("ak_public")?,
        ak_name: r.try_get("ak_name")?,
        enrolled_at: r.try_get("enrolled_at")?,
        last_attested_at: r.try_get("last_attested_at")?,
        last_failure: r.try_get("last_failure")?,
        policy_id: r.try_get("policy_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (dir, Store::open(&url).await.unwrap())
    }

    #[tokio::test]
    async fn nonces_are_single_use_bound_and_expiring() {
        let (_d, s) = store().await;
        s.insert_nonce(b"n1", "h1", 100).await.unwrap();
        assert_eq!(
            s.consume_nonce(b"n1", "h2", 10).await.unwrap(),
            Err(NonceProblem::IssuedToAnotherHost)
        );
        assert_eq!(
            s.consume_nonce(b"n1", "h1", 100).await.unwrap(),
            Err(NonceProblem::Expired)
        );
        assert_eq!(s.consume_nonce(b"n1", "h1", 10).await.unwrap(), Ok(()));
        assert_eq!(
            s.consume_nonce(b"n1", "h1", 10).await.unwrap(),
            Err(NonceProblem::AlreadyUsed)
        );
        assert_eq!(
            s.consume_nonce(b"zz", "h1", 10).await.unwrap(),
            Err(NonceProblem::Unknown)
        );
    }

    #[tokio::test]
    async fn enrollment_answered_once() {
        let (_d, s) = store().await;
        let rec = EnrollmentRecord {
            id: "e1".into(),
            host_id: "h".into(),
            ek_public: vec![1],
            ek_cert_digest: vec![2],
            ak_public: vec![3],
            ak_name: vec![4],
            secret_digest: vec![5],
            expires_at: 50,
        };
        s.insert_enrollment(&rec).await.unwrap();
        assert_eq!(s.take_enrollment("e1", 10).await.unwrap(), Ok(rec));
        assert_eq!(
            s.take_enrollment("e1", 10).await.unwrap(),
            Err(EnrollmentProblem::AlreadyAnswered)
        );
        assert_eq!(
            s.take_enrollment("nope", 10).await.unwrap(),
            Err(EnrollmentProblem::Unknown)
        );
    }
}
