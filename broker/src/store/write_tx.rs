//! The write primitives a backend offers inside one transaction. They do
//! what they say and nothing more: which rows a decision touches, and
//! whether it applies at all, is decided by [`super::apply`].

use async_trait::async_trait;
use verifier_lib::host_clock::ClockState;

use super::{
    AppraisalRecord, HostRecord, HostStatus, ImaCursorRecord, RequestKeyRecord, SnpHostRecord,
    StoreError, TokenRecord, TokenState,
};

/// Where a token subtree starts (every token derived from these follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRoot<'a> {
    /// Every token issued to the host.
    Host(&'a str),
    /// One token.
    Token(&'a [u8]),
    /// Every token issued for the workload.
    Workload(&'a str),
}

/// Reads and writes inside one write transaction (or savepoint).
#[async_trait]
pub trait WriteTx: Send {
    /// The host row, as the transaction sees it.
    async fn host(&mut self, id: &str) -> Result<Option<HostRecord>, StoreError>;

    /// Create the host row, or replace its enrollment, status, attestation
    /// and policy fields (its clock baseline and status reason are kept).
    async fn put_host(&mut self, host: &HostRecord) -> Result<(), StoreError>;

    /// Set a host's status and the operator-facing reason for it.
    async fn set_host_status(
        &mut self,
        id: &str,
        status: HostStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError>;

    async fn host_clock(&mut self, id: &str) -> Result<Option<ClockState>, StoreError>;

    async fn set_host_clock(
        &mut self,
        id: &str,
        clock: Option<ClockState>,
    ) -> Result<(), StoreError>;

    async fn insert_host_event(
        &mut self,
        host_id: &str,
        at: i64,
        kind: &str,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// The host under whose revocation one of `names` is recorded, if any.
    async fn revoked_identity(&mut self, names: &[String]) -> Result<Option<String>, StoreError>;

    /// Record `names` as revoked with host `host_id` (names already
    /// recorded keep their first host).
    async fn insert_revoked_identities(
        &mut self,
        names: &[String],
        host_id: &str,
        at: i64,
    ) -> Result<(), StoreError>;

    /// Forget the revocation names recorded with host `host_id`.
    async fn delete_revoked_identities(&mut self, host_id: &str) -> Result<(), StoreError>;

    /// Record an SNP host's registration unless it is already registered.
    async fn insert_snp_host_if_absent(&mut self, rec: &SnpHostRecord) -> Result<(), StoreError>;

    /// Record a used challenge nonce by digest until it expires; `false`
    /// when it was already recorded (the nonce is being replayed).
    async fn insert_used_nonce(
        &mut self,
        digest: &[u8],
        expires_at: i64,
    ) -> Result<bool, StoreError>;

    async fn insert_appraisal(&mut self, appraisal: &AppraisalRecord) -> Result<(), StoreError>;

    /// Record a token (`parent_cti`: the token it was derived from).
    async fn insert_token(
        &mut self,
        token: &TokenRecord,
        parent_cti: Option<&[u8]>,
    ) -> Result<(), StoreError>;

    async fn token_state(&mut self, cti: &[u8]) -> Result<Option<TokenState>, StoreError>;

    /// The ctis of the tokens selected by `root` and of every token derived
    /// from them, transitively (revoked ones included).
    async fn token_subtree(&mut self, root: TokenRoot<'_>) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Mark the given tokens revoked, those not revoked yet; returns how
    /// many changed.
    async fn revoke_ctis(
        &mut self,
        ctis: &[Vec<u8>],
        reason: &str,
        at: i64,
    ) -> Result<u64, StoreError>;

    /// Advance the status-list version by one.
    async fn bump_status_version(&mut self) -> Result<(), StoreError>;

    async fn request_key(&mut self, host_id: &str) -> Result<Option<RequestKeyRecord>, StoreError>;

    /// Register the host's request key, replacing any earlier one.
    async fn put_request_key(&mut self, key: &RequestKeyRecord) -> Result<(), StoreError>;

    async fn delete_request_key(&mut self, host_id: &str) -> Result<(), StoreError>;

    /// Store the host's IMA cursor, replacing any earlier one.
    async fn put_ima_cursor(&mut self, rec: &ImaCursorRecord) -> Result<(), StoreError>;

    /// The version the policy pointer `slot` names (locked until the
    /// transaction ends where the backend locks rows).
    async fn policy_pointer(&mut self, slot: super::PolicySlot) -> Result<Option<i64>, StoreError>;

    /// Make `version_id` the active policy version: the pointer, the
    /// version's `activated_at`, a history row naming `previous`, and the
    /// shadow pointer cleared if it named this version.
    async fn record_policy_activation(
        &mut self,
        version_id: i64,
        previous: Option<i64>,
        at: i64,
    ) -> Result<(), StoreError>;

    /// Store one audit leaf at `index`.
    async fn insert_audit_leaf(
        &mut self,
        index: u64,
        leaf: &[u8],
        leaf_hash: &[u8],
        time: i64,
    ) -> Result<(), StoreError>;
}

/// A top-level write transaction ([`super::StateStore::begin_write`]).
#[async_trait]
pub trait WriteTransaction: WriteTx {
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
