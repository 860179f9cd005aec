//! Audit-log persistence: the state changes a decision makes, applied in the
//! same transaction as the decision's leaves (see `docs/audit.md`).
//!
//! The audit writer (`crate::audit`) hands the store a batch of
//! [`PrepareEntry`] closures. The backend opens ONE write transaction, reads
//! the next free leaf index under the write lock, and for each closure:
//! calls it with the index its first leaf will get (so a token can carry its
//! own `audit_index`), and inside a savepoint applies its [`StateChange`]
//! and inserts its leaves (`store::apply::write_entry`, the same for every
//! backend). A closure or state change that fails is rolled back
//! to its savepoint and reported to its own caller; the rest of the batch
//! still commits. Nothing is answered before the commit.

use verifier_lib::audit::{Hash, Leaf};
use verifier_lib::decision::ClockUpdate;
use verifier_lib::host_clock::ClockState;
use verifier_lib::token::TokenError;

use super::{
    AppraisalRecord, HostRecord, HostStatus, ImaCursorRecord, NonceProblem, RequestKeyRecord,
    SnpHostRecord, StoreError, TokenRecord,
};

/// The state change a decision makes. Applied atomically with its leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateChange {
    /// A refusal that changes no state: only the leaves are written.
    Nothing,
    /// A host was enrolled (created or replaced).
    Host(HostRecord),
    /// An appraisal decision (TPM or SEV-SNP), applied only while the
    /// preconditions it was decided on hold.
    Appraisal(Box<AppraisalChange>),
    /// An operator revoked a host: status `revoked`, its tokens (and their
    /// descendants) revoked.
    RevokeHost {
        host_id: String,
        reason: String,
        at: i64,
    },
    /// An operator reinstated a revoked host: `revoked` → `enrolled`, clock
    /// baseline cleared.
    ReinstateHost { host_id: String, at: i64 },
    /// A trusted host with no passing attestation since `cutoff` became
    /// `stale`; its tokens are revoked.
    MarkStale {
        host_id: String,
        cutoff: i64,
        at: i64,
    },
    /// A token and all its descendants were revoked.
    RevokeToken {
        cti: Vec<u8>,
        reason: String,
        at: i64,
    },
    /// Every token issued for a workload (and their descendants) was revoked.
    RevokeWorkload {
        workload: String,
        reason: String,
        at: i64,
    },
    /// The host's AK certified this request key over `nonce`; replaces any
    /// earlier one. Applies only while the host is trusted and its clock
    /// baseline is in the boot the key was certified in.
    RequestKey {
        key: RequestKeyRecord,
        nonce: NonceUse,
    },
    /// A token minted on a request signed by the host's request key
    /// `key_name`; recorded only while that key is current and the host is
    /// trusted with a passing appraisal at or after `fresh_since`.
    SignedToken {
        token: TokenRecord,
        key_name: Vec<u8>,
        fresh_since: i64,
        nonce: NonceUse,
    },
    /// A token derived from `parent_cti`; recorded only while the parent is
    /// recorded and unrevoked and its host is trusted with a passing
    /// appraisal at or after `host_fresh_since`.
    DerivedToken {
        token: TokenRecord,
        parent_cti: Vec<u8>,
        host_fresh_since: i64,
    },
    /// A stored policy version became the active one; applies only while
    /// the active pointer still names `expect_active` (what the activation
    /// was decided on). Clears the shadow pointer if it named this version.
    ActivatePolicy {
        version_id: i64,
        expect_active: Option<i64>,
        at: i64,
    },
}

/// A challenge nonce a decision consumes, already authenticated (its MAC,
/// host binding and expiry checked by `crate::decision::nonce::verify`):
/// applied only if unexpired at `at` and not used before (recorded by its
/// SHA-256 until `expires_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceUse {
    pub digest: Vec<u8>,
    pub expires_at: i64,
    pub at: i64,
}

/// What an appraisal decision was taken on; the change applies only while
/// the stored host still matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The host's status (`None`: the host did not exist).
    pub status: Option<HostStatus>,
    /// The host's TPM clock baseline.
    pub clock: Option<ClockState>,
}

/// An appraisal decision as the store applies it: consume the nonce, check
/// the preconditions, record the appraisal, move the host's status (a host
/// that fails has its tokens revoked), the clock baseline and the IMA
/// cursor, register an SEV-SNP host, and insert the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisalChange {
    pub nonce: NonceUse,
    pub expect: Expect,
    pub appraisal: AppraisalRecord,
    /// The host's status after (`None`: an unregistered host stays so).
    pub status: Option<HostStatus>,
    /// Why the status changed, recorded as a host event whose kind is the
    /// status entered (the host page's timeline).
    pub status_reason: Option<&'static str>,
    /// SEV-SNP: register the host (its first affirming appraisal).
    pub register: Option<SnpHostRecord>,
    /// TPM: the new clock baseline.
    pub clock: Option<ClockUpdate>,
    /// TPM: why the quote's clock was refused (a host event).
    pub clock_refused: Option<String>,
    pub token: Option<TokenRecord>,
    pub ima_cursor: Option<ImaCursorRecord>,
}

/// Why a state change did not apply (its leaves are not written either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeRefused {
    #[error("no such host")]
    UnknownHost,
    #[error("the host is not revoked")]
    HostNotRevoked,
    #[error("the host is no longer a stale candidate")]
    HostNotStale,
    #[error("no such token")]
    UnknownToken,
    /// An enrollment of a revoked host, or of a TPM whose EK key or
    /// certificate was revoked under any host id.
    #[error("the host (or its TPM) is revoked")]
    HostRevoked,
    #[error("the parent token is unknown or revoked")]
    ParentRevoked,
    #[error("the host is not trusted with a fresh passing appraisal")]
    HostNotFresh,
    #[error("the request key is not the host's current one")]
    RequestKeyUnknown,
    #[error("nonce refused: {0:?}")]
    Nonce(NonceProblem),
    /// The host changed since the decision was read (status or clock
    /// baseline): decide again.
    #[error("the host changed since the decision was taken")]
    Conflict,
    /// Another activation moved the active policy since this one was
    /// decided.
    #[error("the active policy changed since the activation was decided (expected version {expected:?}, found {actual:?})")]
    PolicyChanged {
        expected: Option<i64>,
        actual: Option<i64>,
    },
}

/// What one decision writes: its state change and its leaves, in order.
#[derive(Debug, Clone)]
pub struct Entry {
    pub change: StateChange,
    pub leaves: Vec<Leaf>,
}

/// Builds an [`Entry`] given the index its first leaf will get. Runs inside
/// the write transaction, so it must be quick and must not block.
pub type PrepareEntry = Box<dyn FnOnce(u64) -> Result<Entry, EntryError> + Send>;

/// Where a committed entry's leaves went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Index of the entry's first leaf.
    pub first_index: u64,
    /// Hashes of the entry's leaves, in order.
    pub leaf_hashes: Vec<Hash>,
    /// Tokens the state change revoked (descendants included).
    pub tokens_revoked: u64,
}

/// Why one entry of a batch was not written (the others may have been).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("minting the entry's token: {0}")]
    Mint(#[source] TokenError),
    #[error("applying the entry: {0}")]
    Store(#[source] StoreError),
    #[error("state change refused: {0}")]
    Refused(#[source] ChangeRefused),
    #[error("leaf {index}: {actual} bytes exceeds the {max}-byte limit")]
    LeafTooLarge {
        index: u64,
        max: usize,
        actual: usize,
    },
}

/// One stored leaf row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRow {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    pub time: i64,
}

/// One stored signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub size: u64,
    pub note: String,
    pub created_at: i64,
    /// The signing key's id (`<key name>+<8 hex key hash>`), as stored, or
    /// read from the note's first signature line for rows stored before the
    /// column existed (empty if the note names none).
    pub key_id: String,
}

impl CheckpointRow {
    /// `key_id` as stored, or the one the note names.
    pub(crate) fn key_id_or_from_note(stored: Option<String>, note: &str) -> String {
        stored.unwrap_or_else(|| {
            crate::audit::key::key_ids_of_note(note)
                .into_iter()
                .next()
                .unwrap_or_default()
        })
    }
}

/// A broker's checkpoint verifier key, published in the store so that every
/// checkpoint of a log shared by several brokers can be checked under the
/// key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditKeyRecord {
    /// `<key name>+<8 hex key hash>`, as named by the notes it signs.
    pub key_id: String,
    /// The signed-note verifier key text.
    pub vkey: String,
    /// The broker that holds the key (`broker.name`).
    pub broker: String,
    pub added_at: i64,
    pub retired_at: Option<i64>,
}

/// Signs a checkpoint inside the store's write transaction (see
/// [`crate::store::StateStore::sign_audit_checkpoint`]): given the leaf
/// hashes committed at or beyond the index it asked from, it brings its tree
/// to the database's size and returns the checkpoint to store (or `None`
/// when there is nothing new to sign). Runs under the log's write lock, so
/// it must be quick and must not block.
pub type SignCheckpoint =
    Box<dyn FnOnce(Vec<(u64, Hash)>) -> Result<Option<CheckpointRow>, CheckpointError> + Send>;

/// Why no checkpoint was signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing the checkpoint: {0}")]
    Sign(#[source] verifier_lib::audit::AuditError),
    /// The stored log does not continue the in-memory tree where expected.
    #[error("the stored log has index {actual} where the tree expects {expected}")]
    NotContiguous { expected: u64, actual: u64 },
}

pub(crate) fn to_u64(what: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}

pub(crate) fn to_i64(what: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}
