//! Broker state: hosts, pending enrollments, nonces, appraisals and tokens.
//!
//! Handlers talk to [`Store`] only. SQLite is the embedded default; the enum
//! is the seam where the PostgreSQL backend (several brokers, one database)
//! plugs in without touching any handler. Every state change that records a
//! decision happens in one transaction.

pub mod audit;
mod governance;
mod ima_cursor;
mod request_key;
mod snp;
mod sqlite;

pub use governance::{stale_reason, ClockCheck, HostEvent, RevocationOutcome, TokenState};
pub use ima_cursor::ImaCursorRecord;
pub use request_key::RequestKeyRecord;
pub use snp::SnpHostRecord;

use serde::Serialize;

pub use verifier_lib::decision::HostStatus;

/// An enrolled host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub id: String,
    pub status: HostStatus,
    /// TPM2B_PUBLIC of the EK.
    pub ek_public: Vec<u8>,
    pub ek_cert_digest: Vec<u8>,
    /// TPM2B_PUBLIC of the AK.
    pub ak_public: Vec<u8>,
    pub ak_name: Vec<u8>,
    pub enrolled_at: i64,
    pub last_attested_at: Option<i64>,
    /// JSON array of failures of the last failed appraisal.
    pub last_failure: Option<String>,
    pub policy_id: Option<String>,
}

/// A credential-activation challenge waiting for the host's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    pub id: String,
    pub host_id: String,
    pub ek_public: Vec<u8>,
    pub ek_cert_digest: Vec<u8>,
    pub ak_public: Vec<u8>,
    pub ak_name: Vec<u8>,
    /// SHA-256 of the activation secret (the secret itself is not stored).
    pub secret_digest: Vec<u8>,
    pub expires_at: i64,
}

/// One appraisal, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisalRecord {
    pub host_id: String,
    pub at: i64,
    /// `affirming` or `contraindicated`.
    pub verdict: String,
    pub policy_id: String,
    pub policy_hash: String,
    pub evidence_digest: Vec<u8>,
    /// JSON array of failures (empty when affirming).
    pub failures: String,
}

/// A minted token, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub cti: Vec<u8>,
    pub host_id: String,
    pub workload: String,
    pub workload_digest: Vec<u8>,
    pub iat: i64,
    pub exp: i64,
    pub policy_id: String,
    pub token_digest: Vec<u8>,
}

/// Why a nonce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NonceProblem {
    Unknown,
    IssuedToAnotherHost,
    Expired,
    AlreadyUsed,
}

/// Why a pending enrollment could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentProblem {
    Unknown,
    Expired,
    AlreadyAnswered,
}

/// A storage failure. Details go to logs; clients see `storage_error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported storage url {url:?}: expected sqlite://PATH")]
    UnsupportedUrl { url: String },
    #[error("corrupt row: {what} = {value:?}")]
    Corrupt { what: &'static str, value: String },
}

/// The broker's state store.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// Open (creating if needed) the store named by `url` and apply migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl {
                url: url.to_owned(),
            })
        }
    }

    pub async fn insert_enrollment(&self, rec: &EnrollmentRecord) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_enrollment(rec).await,
        }
    }

    /// Atomically take a pending enrollment (it can be answered once).
    pub async fn take_enrollment(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Result<EnrollmentRecord, EnrollmentProblem>, StoreError> {
        match self {
            Store::Sqlite(s) => s.take_enrollment(id, now).await,
        }
    }

    /// Create or replace a host after a successful credential activation.
    pub async fn upsert_host(&self, host: &HostRecord) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.upsert_host(host).await,
        }
    }

    pub async fn host(&self, id: &str) -> Result<Option<HostRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host(id).await,
        }
    }

    pub async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.hosts().await,
        }
    }

    pub async fn insert_nonce(
        &self,
        nonce: &[u8],
        host_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_nonce(nonce, host_id, expires_at).await,
        }
    }

    /// Mark a nonce used, once, if it was issued to `host_id` and is unexpired.
    pub async fn consume_nonce(
        &self,
        nonce: &[u8],
        host_id: &str,
        now: i64,
    ) -> Result<Result<(), NonceProblem>, StoreError> {
        match self {
            Store::Sqlite(s) => s.consume_nonce(nonce, host_id, now).await,
        }
    }

    /// Record an appraisal, the host's new status and, when one was minted,
    /// the token — all in one transaction.
    pub async fn record_appraisal(
        &self,
        appraisal: &AppraisalRecord,
        status: HostStatus,
        token: Option<&TokenRecord>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_appraisal(appraisal, status, token).await,
        }
    }

    pub async fn token(&self, cti: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.token(cti).await,
        }
    }

    /// Append a batch of audit entries (state change + leaves) in one
    /// transaction; see [`audit`].
    pub async fn append_audit_batch(
        &self,
        batch: Vec<audit::PrepareEntry>,
    ) -> Result<Vec<Result<audit::Appended, audit::EntryError>>, StoreError> {
        match self {
            Store::Sqlite(s) => s.append_audit_batch(batch).await,
        }
    }

    /// Audit leaf hashes with index `>= from`, in order, at most `limit`.
    pub async fn audit_leaf_hashes(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, verifier_lib::audit::Hash)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.audit_leaf_hashes(from, limit).await,
        }
    }

    /// Audit leaf rows with `start <= index < end`.
    pub async fn audit_leaves(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<audit::LeafRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.audit_leaves(start, end).await,
        }
    }

    pub async fn insert_audit_checkpoint(
        &self,
        cp: &audit::CheckpointRow,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_audit_checkpoint(cp).await,
        }
    }

    /// Signed checkpoints with size `>= from_size`, in issue order.
    pub async fn audit_checkpoints(
        &self,
        from_size: u64,
    ) -> Result<Vec<audit::CheckpointRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.audit_checkpoints(from_size).await,
        }
    }

    pub async fn latest_audit_checkpoint(
        &self,
    ) -> Result<Option<audit::CheckpointRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.latest_audit_checkpoint().await,
        }
    }

    /// Count of rows per table, for tests and metrics.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        match self {
            Store::Sqlite(s) => s.counts().await,
        }
    }
}

/// Row counts (tests check that bad input changed nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub hosts: i64,
    pub enrollments: i64,
    pub nonces: i64,
    pub appraisals: i64,
    pub tokens: i64,
}

/// A stored host status.
pub(crate) fn parse_status(s: &str) -> Result<HostStatus, StoreError> {
    HostStatus::from_name(s).ok_or_else(|| StoreError::Corrupt {
        what: "hosts.status",
        value: s.to_owned(),
    })
}
