//! The embedded SQLite backend (WAL mode, one file). Everything that
//! speaks SQL to SQLite lives in this folder; the rules of state changes
//! are applied above it (`store::apply`) through [`write_tx::SqliteTx`].

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use verifier_lib::audit::Hash;
use verifier_lib::host_clock::ClockState;

use super::audit::{Appended, CheckpointRow, EntryError, LeafRow, PrepareEntry};
use super::{
    revocation_names, Counts, EnrollmentProblem, EnrollmentRecord, EpochPlan, EpochStatuses,
    HostEvent, HostEvents, HostRecord, HostState, HostStatus, ImaCursorRecord, RequestKeyRecord,
    RetentionCutoffs, RetentionReport, SnpHostRecord, StateStore, StatusEpoch, StatusSlot,
    StoreError, TokenQuery, TokenRecord, TokenState, WriteTransaction,
};

mod audit;
mod policy;
mod retention;
mod rows;
mod status_list;
mod tokens;
mod write_tx;

use write_tx::SqliteTx;

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

    /// An existing file with the driver's defaults: not created, not
    /// migrated, one connection.
    pub async fn open_as_stored(url: &str) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn insert_enrollment(&self, r: &EnrollmentRecord) -> Result<(), StoreError> {
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

    async fn fleet_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: i64,
    ) -> Result<Vec<u8>, StoreError> {
        retention::fleet_secret(&self.pool, name, candidate, now).await
    }

    async fn delete_expired(
        &self,
        cutoffs: &RetentionCutoffs,
    ) -> Result<RetentionReport, StoreError> {
        retention::delete_expired(&self.pool, cutoffs).await
    }

    async fn take_enrollment(
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

    async fn host(&self, id: &str) -> Result<Option<HostRecord>, StoreError> {
        rows::host(&mut *self.pool.acquire().await?, id).await
    }

    async fn host_state(&self, id: &str) -> Result<Option<HostState>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(host) = rows::host(&mut tx, id).await? else {
            return Ok(None);
        };
        let clock = rows::host_clock(&mut tx, id).await?;
        let ima_cursor = rows::ima_cursor(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(HostState {
            host,
            clock,
            ima_cursor,
        }))
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        rows::hosts(&mut *self.pool.acquire().await?).await
    }

    async fn token(&self, cti: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.token_state(cti).await?.map(|t| t.record))
    }

    async fn token_state(&self, cti: &[u8]) -> Result<Option<TokenState>, StoreError> {
        rows::token(&mut *self.pool.acquire().await?, cti).await
    }

    async fn tokens(&self, query: &TokenQuery<'_>) -> Result<Vec<TokenState>, StoreError> {
        tokens::tokens(&mut *self.pool.acquire().await?, query).await
    }

    async fn token_children(&self, cti: &[u8], limit: u32) -> Result<Vec<TokenState>, StoreError> {
        tokens::children(&mut *self.pool.acquire().await?, cti, limit).await
    }

    async fn host_clock(&self, host_id: &str) -> Result<Option<ClockState>, StoreError> {
        rows::host_clock(&mut *self.pool.acquire().await?, host_id).await
    }

    async fn set_host_clock(
        &self,
        host_id: &str,
        clock: Option<ClockState>,
    ) -> Result<(), StoreError> {
        write_tx::set_host_clock(&mut *self.pool.acquire().await?, host_id, clock).await
    }

    async fn stale_candidates(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "SELECT id FROM hosts WHERE status = 'trusted'
               AND (last_attested_at IS NULL OR last_attested_at < $1) ORDER BY id",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("id").map_err(StoreError::from))
        .collect()
    }

    async fn status_version(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let v = rows::status_version(&mut tx).await?;
        tx.commit().await?;
        Ok(v)
    }

    async fn revoked_ctis(&self, cutoff: i64) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let v = rows::status_version(&mut tx).await?;
        let rows = sqlx::query("SELECT cti FROM tokens WHERE revoked = 1 AND exp > $1")
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let ctis = rows
            .iter()
            .map(|r| r.try_get::<Vec<u8>, _>("cti"))
            .collect::<Result<_, _>>()?;
        Ok((v, ctis))
    }

    async fn allocate_status_slot(
        &self,
        plan: EpochPlan,
        now: i64,
    ) -> Result<StatusSlot, StoreError> {
        status_list::allocate(&self.pool, plan, now).await
    }

    async fn live_status_epochs(
        &self,
        plan: EpochPlan,
        cutoff: i64,
        now: i64,
    ) -> Result<(u64, Vec<StatusEpoch>), StoreError> {
        status_list::live_epochs(&self.pool, plan, cutoff, now).await
    }

    async fn epoch_statuses(&self, epoch: u64) -> Result<Option<EpochStatuses>, StoreError> {
        status_list::epoch_statuses(&self.pool, epoch).await
    }

    async fn host_events(
        &self,
        host_id: &str,
        which: HostEvents,
        limit: u32,
    ) -> Result<Vec<HostEvent>, StoreError> {
        rows::host_events(&mut *self.pool.acquire().await?, host_id, which, limit).await
    }

    async fn request_key(&self, host_id: &str) -> Result<Option<RequestKeyRecord>, StoreError> {
        rows::request_key(&mut *self.pool.acquire().await?, host_id).await
    }

    async fn revoked_identity(&self, names: &[String]) -> Result<Option<String>, StoreError> {
        rows::revoked_identity(&mut *self.pool.acquire().await?, names).await
    }

    async fn backfill_revoked_identities(&self, at: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let revoked: Vec<HostRecord> = rows::hosts(&mut tx)
            .await?
            .into_iter()
            .filter(|h| h.status == HostStatus::Revoked)
            .collect();
        let mut added = 0;
        for host in &revoked {
            let names = revocation_names(host);
            added += rows::insert_revoked_identities(&mut tx, &names, &host.id, at).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn snp_host(&self, id: &str) -> Result<Option<SnpHostRecord>, StoreError> {
        rows::snp_host(&mut *self.pool.acquire().await?, id).await
    }

    async fn ima_cursor(&self, host_id: &str) -> Result<Option<ImaCursorRecord>, StoreError> {
        rows::ima_cursor(&mut *self.pool.acquire().await?, host_id).await
    }

    async fn append_audit_batch(
        &self,
        batch: Vec<PrepareEntry>,
    ) -> Result<Vec<Result<Appended, EntryError>>, StoreError> {
        audit::append_batch(&self.pool, batch).await
    }

    async fn audit_leaf_hashes(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        audit::leaf_hashes(&self.pool, from, limit).await
    }

    async fn audit_leaves(&self, start: u64, end: u64) -> Result<Vec<LeafRow>, StoreError> {
        audit::leaves(&self.pool, start, end).await
    }

    async fn insert_audit_checkpoint(&self, cp: &CheckpointRow) -> Result<(), StoreError> {
        audit::insert_checkpoint(&self.pool, cp).await
    }

    async fn audit_checkpoints(
        &self,
        from_size: u64,
        limit: u64,
    ) -> Result<Vec<CheckpointRow>, StoreError> {
        audit::checkpoints(&self.pool, from_size, limit).await
    }

    async fn latest_audit_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        audit::latest_checkpoint(&self.pool).await
    }

    async fn latest_audit_checkpoint_of(
        &self,
        key_id: &str,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        audit::latest_checkpoint_of(&self.pool, key_id).await
    }

    async fn sign_audit_checkpoint(
        &self,
        from: u64,
        sign: crate::store::audit::SignCheckpoint,
    ) -> Result<Option<CheckpointRow>, crate::store::audit::CheckpointError> {
        audit::sign_checkpoint(&self.pool, from, sign).await
    }

    async fn register_audit_key(
        &self,
        key: &crate::store::audit::AuditKeyRecord,
    ) -> Result<(), StoreError> {
        audit::register_key(&self.pool, key).await
    }

    async fn audit_keys(&self) -> Result<Vec<crate::store::audit::AuditKeyRecord>, StoreError> {
        audit::keys(&self.pool).await
    }

    async fn insert_policy_version(
        &self,
        version: crate::store::NewPolicyVersion<'_>,
    ) -> Result<crate::store::PolicyVersion, StoreError> {
        policy::insert_version(&mut *self.pool.acquire().await?, version).await
    }

    async fn policy_version(
        &self,
        id: i64,
    ) -> Result<Option<crate::store::PolicyVersion>, StoreError> {
        policy::version_by_id(&mut *self.pool.acquire().await?, id).await
    }

    async fn policy_version_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<crate::store::PolicyVersion>, StoreError> {
        policy::version_by_hash(&mut *self.pool.acquire().await?, hash).await
    }

    async fn policy_pointers(&self) -> Result<crate::store::PolicyPointers, StoreError> {
        policy::pointers(&mut *self.pool.acquire().await?).await
    }

    async fn set_policy_shadow(&self, version: Option<i64>, at: i64) -> Result<(), StoreError> {
        policy::set_pointer(
            &mut *self.pool.acquire().await?,
            crate::store::PolicySlot::Shadow,
            version,
            at,
        )
        .await
    }

    async fn policy_history(
        &self,
        limit: u32,
    ) -> Result<Vec<crate::store::PolicyActivation>, StoreError> {
        policy::history(&mut *self.pool.acquire().await?, limit).await
    }

    async fn insert_shadow_difference(
        &self,
        d: &crate::store::ShadowDifference,
    ) -> Result<(), StoreError> {
        policy::insert_difference(&mut *self.pool.acquire().await?, d).await
    }

    async fn shadow_differences(
        &self,
        shadow_hash: &str,
        limit: u32,
    ) -> Result<Vec<crate::store::ShadowDifference>, StoreError> {
        policy::differences(&mut *self.pool.acquire().await?, shadow_hash, limit).await
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM hosts) AS hosts, (SELECT COUNT(*) FROM enrollments) AS enrollments,
                    (SELECT COUNT(*) FROM used_nonces) AS used_nonces, (SELECT COUNT(*) FROM appraisals) AS appraisals,
                    (SELECT COUNT(*) FROM tokens) AS tokens",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            hosts: row.try_get("hosts")?,
            enrollments: row.try_get("enrollments")?,
            used_nonces: row.try_get("used_nonces")?,
            appraisals: row.try_get("appraisals")?,
            tokens: row.try_get("tokens")?,
        })
    }
    async fn begin_write(&self) -> Result<Box<dyn WriteTransaction>, StoreError> {
        // IMMEDIATE: take the write lock first, so what the transaction
        // reads cannot go stale before it commits.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteTx(tx)))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_store::{store, Backend};
    use crate::store::tests::enrollment;
    use crate::store::*;

    #[tokio::test]
    async fn open_as_stored_neither_creates_nor_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("absent.db").display());
        assert!(matches!(
            Store::open_as_stored(&url).await,
            Err(StoreError::Database(_))
        ));
        assert!(!dir.path().join("absent.db").exists());
        let (d, s) = store(Backend::Sqlite).await;
        s.insert_enrollment(&enrollment("e1", 50)).await.unwrap();
        let stored = Store::open_as_stored(&d.url()).await.unwrap();
        assert_eq!(stored.counts().await.unwrap().enrollments, 1);
    }
}
