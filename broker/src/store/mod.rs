//! Broker state: hosts, pending enrollments, nonces, appraisals and tokens.
//!
//! Handlers talk to [`Store`] only: a handle over a [`StateStore`] backend.
//! Each backend is one folder: `sqlite/` (embedded, the default) and
//! `postgres/` (several brokers on one database). Backends implement
//! reads and small write primitives ([`WriteTx`]); the rules that decide
//! what a state change does live above them, in [`apply`]. Every state
//! change that records a decision happens in one transaction.

pub mod apply;
pub mod audit;
mod governance;
mod ima_cursor;
pub mod policy;
#[cfg(test)]
mod policy_tests;
mod postgres;
mod request_key;
mod retention;
mod revoked_identity;
mod snp;
mod sqlite;
pub mod status_list;
#[cfg(test)]
mod test_store;
#[cfg(test)]
mod tests;
pub mod token_query;
mod write_tx;

pub use governance::{
    stale_reason, HostEvent, HostEvents, TokenState, MAX_HOST_EVENTS, STATUS_EVENT_KINDS,
};
pub use ima_cursor::ImaCursorRecord;
pub use policy::{
    NewPolicyVersion, PolicyActivation, PolicyPointers, PolicySlot, PolicyVersion, ShadowDifference,
};
pub use request_key::RequestKeyRecord;
pub use retention::{RetentionCutoffs, RetentionReport};
pub use revoked_identity::revocation_names;
pub use snp::SnpHostRecord;
pub use status_list::{EpochPlan, EpochStatuses, StatusEpoch, StatusSlot};
pub use token_query::{TokenCursor, TokenLifecycle, TokenQuery};
pub use write_tx::{TokenRoot, WriteTransaction, WriteTx};

use std::fmt::Debug;
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use verifier_lib::host_clock::ClockState;

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

/// What a decision about a host reads first ([`StateStore::host_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    pub host: HostRecord,
    /// The TPM clock baseline.
    pub clock: Option<ClockState>,
    pub ima_cursor: Option<ImaCursorRecord>,
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
    /// The token's entry in a status list (`None` for tokens minted before
    /// status lists had indices).
    pub status: Option<StatusSlot>,
    /// The index of the token's own `token_minted` audit leaf (its
    /// `audit_index` claim; `None` for tokens minted before it was
    /// recorded).
    pub audit_index: Option<u64>,
}

/// Why a nonce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NonceProblem {
    /// Not a challenge this broker fleet issued to this host (malformed, or
    /// its MAC does not verify for the host id).
    Unknown,
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
    #[error("unsupported storage url {url:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl { url: String },
    #[error("corrupt row: {what} = {value:?}")]
    Corrupt { what: &'static str, value: String },
}

/// What a storage backend implements: the reads the broker needs, the few
/// writes that are not decisions (enrollment challenges, nonce consumption,
/// checkpoints, operator clock overrides), the audit batch append, and a
/// write transaction of small primitives ([`WriteTx`]). The business rules
/// (revocation cascade, lineage, staleness, reinstatement, the clock
/// progress check) are applied above this trait, in [`apply`].
#[async_trait]
pub trait StateStore: Send + Sync + Debug {
    async fn insert_enrollment(&self, rec: &EnrollmentRecord) -> Result<(), StoreError>;

    /// The fleet secret `name`: the stored one, or `candidate` stored now
    /// when there is none (the first broker to ask creates it; every broker
    /// on this store then shares it).
    async fn fleet_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: i64,
    ) -> Result<Vec<u8>, StoreError>;

    /// Delete what retention lets go (see [`RetentionCutoffs`]); audit
    /// leaves are never deleted.
    async fn delete_expired(
        &self,
        cutoffs: &RetentionCutoffs,
    ) -> Result<RetentionReport, StoreError>;

    /// Atomically take a pending enrollment (it can be answered once).
    async fn take_enrollment(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Result<EnrollmentRecord, EnrollmentProblem>, StoreError>;

    async fn host(&self, id: &str) -> Result<Option<HostRecord>, StoreError>;

    /// The prior state a decision about the host reads, as one consistent
    /// snapshot (one read transaction): the host, its TPM clock baseline and
    /// its IMA cursor.
    async fn host_state(&self, id: &str) -> Result<Option<HostState>, StoreError>;

    /// All hosts, by id.
    async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError>;

    async fn token(&self, cti: &[u8]) -> Result<Option<TokenRecord>, StoreError>;

    /// A token with its lineage parent and revocation state.
    async fn token_state(&self, cti: &[u8]) -> Result<Option<TokenState>, StoreError>;

    /// The tokens `query` selects, with their lineage parent and
    /// revocation state, newest first (`iat` descending, then `cti`).
    async fn tokens(&self, query: &TokenQuery<'_>) -> Result<Vec<TokenState>, StoreError>;

    /// At most `limit` tokens derived directly from `cti`, newest first.
    async fn token_children(&self, cti: &[u8], limit: u32) -> Result<Vec<TokenState>, StoreError>;

    /// The host's clock baseline, if any.
    async fn host_clock(&self, host_id: &str) -> Result<Option<ClockState>, StoreError>;

    /// Overwrite the clock baseline (operators and tests).
    async fn set_host_clock(
        &self,
        host_id: &str,
        clock: Option<ClockState>,
    ) -> Result<(), StoreError>;

    /// `trusted` hosts whose last passing attestation is older than
    /// `cutoff` (candidates for `StateChange::MarkStale`), by id.
    async fn stale_candidates(&self, cutoff: i64) -> Result<Vec<String>, StoreError>;

    /// The current status-list version (grows with every revocation).
    async fn status_version(&self) -> Result<u64, StoreError>;

    /// Revoked tokens that expire after `cutoff`, with the version they
    /// reflect (read in one transaction).
    async fn revoked_ctis(&self, cutoff: i64) -> Result<(u64, Vec<Vec<u8>>), StoreError>;

    /// A slot for a new token: the next index of the current epoch, or
    /// index 0 of a new epoch when the current one is full or older than
    /// `plan.period_secs`. One row update, atomic across brokers; an index
    /// is never handed out twice (one whose token is never minted stays
    /// unused, status 0).
    async fn allocate_status_slot(
        &self,
        plan: EpochPlan,
        now: i64,
    ) -> Result<StatusSlot, StoreError>;

    /// The current epoch (opening the first one if there is none) and every
    /// live epoch: the current one and those with a token expiring after
    /// `cutoff`. Ascending.
    async fn live_status_epochs(
        &self,
        plan: EpochPlan,
        cutoff: i64,
        now: i64,
    ) -> Result<(u64, Vec<StatusEpoch>), StoreError>;

    /// What epoch `epoch`'s list holds, or `None` for an epoch never opened.
    async fn epoch_statuses(&self, epoch: u64) -> Result<Option<EpochStatuses>, StoreError>;

    /// Call `on_change` whenever a revocation commits, through any broker
    /// on this store, as soon as the backend can tell (PostgreSQL:
    /// `LISTEN/NOTIFY`). Returns `false` when the backend cannot push (the
    /// caller polls).
    fn spawn_status_listener(&self, on_change: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        let _ = on_change;
        false
    }

    /// A host's newest `limit` recorded events of `which` kinds, oldest
    /// first.
    async fn host_events(
        &self,
        host_id: &str,
        which: HostEvents,
        limit: u32,
    ) -> Result<Vec<HostEvent>, StoreError>;

    /// The host's request key, if one is registered.
    async fn request_key(&self, host_id: &str) -> Result<Option<RequestKeyRecord>, StoreError>;

    /// The host under whose revocation one of `names` (see
    /// [`revocation_names`]) is recorded, if any.
    async fn revoked_identity(&self, names: &[String]) -> Result<Option<String>, StoreError>;

    /// Record the revocation names of every revoked host that has none yet
    /// (hosts revoked before identities were recorded); returns how many
    /// names were added.
    async fn backfill_revoked_identities(&self, at: i64) -> Result<u64, StoreError>;

    /// The registration of SNP host `id`, if any.
    async fn snp_host(&self, id: &str) -> Result<Option<SnpHostRecord>, StoreError>;

    /// The host's IMA cursor, if an IMA appraisal was ever accepted.
    async fn ima_cursor(&self, host_id: &str) -> Result<Option<ImaCursorRecord>, StoreError>;

    /// Append a batch of audit entries (state change + leaves) in one
    /// transaction, each entry applied with [`apply::write_entry`]; see
    /// [`audit`]. The outer error means nothing was committed; otherwise
    /// each entry has its own outcome, in order.
    async fn append_audit_batch(
        &self,
        batch: Vec<audit::PrepareEntry>,
    ) -> Result<Vec<Result<audit::Appended, audit::EntryError>>, StoreError>;

    /// Audit leaf hashes with index `>= from`, in order, at most `limit`.
    async fn audit_leaf_hashes(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, verifier_lib::audit::Hash)>, StoreError>;

    /// Audit leaf rows with `start <= index < end`, in order.
    async fn audit_leaves(&self, start: u64, end: u64) -> Result<Vec<audit::LeafRow>, StoreError>;

    async fn insert_audit_checkpoint(&self, cp: &audit::CheckpointRow) -> Result<(), StoreError>;

    /// At most `limit` signed checkpoints with size `>= from_size`, in issue
    /// order.
    async fn audit_checkpoints(
        &self,
        from_size: u64,
        limit: u64,
    ) -> Result<Vec<audit::CheckpointRow>, StoreError>;

    /// The most recently issued checkpoint.
    async fn latest_audit_checkpoint(&self) -> Result<Option<audit::CheckpointRow>, StoreError>;

    /// The newest checkpoint signed by the key `key_id`, or the newest one
    /// stored before checkpoints named their key (check its `key_id`).
    async fn latest_audit_checkpoint_of(
        &self,
        key_id: &str,
    ) -> Result<Option<audit::CheckpointRow>, StoreError>;

    /// Sign and store a checkpoint under the log's write lock (no append
    /// commits meanwhile): `sign` gets the leaf hashes stored from index
    /// `from` on; see [`audit::SignCheckpoint`].
    async fn sign_audit_checkpoint(
        &self,
        from: u64,
        sign: audit::SignCheckpoint,
    ) -> Result<Option<audit::CheckpointRow>, audit::CheckpointError>;

    /// Publish a broker's checkpoint verifier key (a key id already
    /// published is left as it is).
    async fn register_audit_key(&self, key: &audit::AuditKeyRecord) -> Result<(), StoreError>;

    /// Every published checkpoint verifier key, oldest first.
    async fn audit_keys(&self) -> Result<Vec<audit::AuditKeyRecord>, StoreError>;

    /// Store a policy version; a version with the same hash is kept as it
    /// is and returned (importing twice is harmless).
    async fn insert_policy_version(
        &self,
        version: NewPolicyVersion<'_>,
    ) -> Result<PolicyVersion, StoreError>;

    async fn policy_version(&self, id: i64) -> Result<Option<PolicyVersion>, StoreError>;

    /// The version whose document hashes to `hash` (hex).
    async fn policy_version_by_hash(&self, hash: &str)
        -> Result<Option<PolicyVersion>, StoreError>;

    /// The versions the active and shadow pointers name (one cheap read,
    /// polled by every broker).
    async fn policy_pointers(&self) -> Result<PolicyPointers, StoreError>;

    /// Point the shadow slot at `version` (`None`: no shadow). Not a
    /// decision: the shadow policy changes no verdict.
    async fn set_policy_shadow(&self, version: Option<i64>, at: i64) -> Result<(), StoreError>;

    /// At most `limit` activations, newest first.
    async fn policy_history(&self, limit: u32) -> Result<Vec<PolicyActivation>, StoreError>;

    /// Record a shadow difference (an appraisal whose verdict under the
    /// shadow policy differs).
    async fn insert_shadow_difference(&self, d: &ShadowDifference) -> Result<(), StoreError>;

    /// At most `limit` shadow differences recorded under the shadow version
    /// `shadow_hash`, newest first.
    async fn shadow_differences(
        &self,
        shadow_hash: &str,
        limit: u32,
    ) -> Result<Vec<ShadowDifference>, StoreError>;

    /// The version in `slot`, if any.
    async fn policy_in(&self, slot: PolicySlot) -> Result<Option<PolicyVersion>, StoreError> {
        let pointers = self.policy_pointers().await?;
        let id = match slot {
            PolicySlot::Active => pointers.active,
            PolicySlot::Shadow => pointers.shadow,
        };
        match id {
            Some(id) => self.policy_version(id).await,
            None => Ok(None),
        }
    }

    /// Count of rows per table, for tests and metrics.
    async fn counts(&self) -> Result<Counts, StoreError>;

    /// Begin a write transaction that holds the backend's write lock until
    /// it is committed (dropping it rolls back).
    async fn begin_write(&self) -> Result<Box<dyn WriteTransaction>, StoreError>;
}

/// The broker's state store: a cheap cloneable handle over a backend.
/// Reads go straight to the backend (`Deref`); rules that span several
/// primitives (the clock check) are methods here.
#[derive(Debug, Clone)]
pub struct Store(Arc<dyn StateStore>);

/// The backend a storage URL names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl {
                url: url.to_owned(),
            })
        }
    }
}

impl Store {
    /// Open (creating if needed) the store named by `url` and apply
    /// migrations. The scheme picks the backend: `sqlite:` or
    /// `postgres://`/`postgresql://` (the database must exist).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Ok(Store(match Backend::of(url)? {
            Backend::Sqlite => Arc::new(sqlite::SqliteStore::open(url).await?),
            Backend::Postgres => Arc::new(postgres::PgStore::open(url).await?),
        }))
    }

    /// Open an existing store as stored: nothing is created and no
    /// migration runs (`writ-broker audit verify` reads a log untouched).
    pub async fn open_as_stored(url: &str) -> Result<Store, StoreError> {
        Ok(Store(match Backend::of(url)? {
            Backend::Sqlite => Arc::new(sqlite::SqliteStore::open_as_stored(url).await?),
            Backend::Postgres => Arc::new(postgres::PgStore::open_as_stored(url).await?),
        }))
    }

    /// Whether `url` names a store in a database server rather than a file
    /// (`postgres://`).
    pub fn is_server_url(url: &str) -> bool {
        matches!(Backend::of(url), Ok(Backend::Postgres))
    }
}

impl Deref for Store {
    type Target = dyn StateStore;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Row counts (tests check that bad input changed nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub hosts: i64,
    pub enrollments: i64,
    /// Used challenge nonces still recorded (until they expire).
    pub used_nonces: i64,
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
