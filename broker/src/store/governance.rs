//! Store reads and writes of continuous governance: the TPM clock baseline,
//! stale candidates, token lineage state, the status-list version and host
//! events. Revocations, reinstatement, staleness and derived tokens are
//! decisions: they are `StateChange`s applied by the audit writer together
//! with their audit leaves (`store::audit`).

use serde::Serialize;
use verifier_lib::host_clock::{ClockState, ClockTransition, RebootEvidence};
use verifier_lib::policy::Failure;

use super::{Store, StoreError, TokenRecord};

/// Why a host went stale, as recorded with it.
pub fn stale_reason(cutoff: i64) -> String {
    format!("no passing attestation since {cutoff}")
}

/// The outcome of a clock check: accepted (and recorded) or refused.
pub type ClockCheck = Result<ClockTransition, Failure>;

/// What a revocation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RevocationOutcome {
    /// Tokens newly marked revoked (descendants included).
    pub revoked_tokens: u64,
    /// The status-list version after the change.
    pub status_version: u64,
}

/// A token as the store knows it, with its revocation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub record: TokenRecord,
    pub parent_cti: Option<Vec<u8>>,
    pub revoked: bool,
}

/// One entry of a host's history (reboots, state changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostEvent {
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

impl Store {
    /// Check the quote's clock against the host's baseline and, when it may
    /// follow it, make it the new baseline — in one transaction.
    pub async fn check_and_record_clock(
        &self,
        host_id: &str,
        current: ClockState,
        boot: RebootEvidence,
        now: i64,
    ) -> Result<ClockCheck, StoreError> {
        match self {
            Store::Sqlite(s) => s.check_and_record_clock(host_id, current, boot, now).await,
        }
    }

    /// The host's clock baseline, if any.
    pub async fn host_clock(&self, host_id: &str) -> Result<Option<ClockState>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_clock(host_id).await,
        }
    }

    /// Overwrite the clock baseline (operators and tests).
    pub async fn set_host_clock(
        &self,
        host_id: &str,
        clock: Option<ClockState>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_host_clock(host_id, clock).await,
        }
    }

    /// `trusted` hosts whose last passing attestation is older than
    /// `cutoff` (candidates for `StateChange::MarkStale`).
    pub async fn stale_candidates(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.stale_candidates(cutoff).await,
        }
    }

    /// A token with its lineage parent and revocation state.
    pub async fn token_state(&self, cti: &[u8]) -> Result<Option<TokenState>, StoreError> {
        match self {
            Store::Sqlite(s) => s.token_state(cti).await,
        }
    }

    /// The current status-list version (grows with every revocation).
    pub async fn status_version(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.status_version().await,
        }
    }

    /// Revoked tokens that expire after `cutoff`, with the version they
    /// reflect (read in one transaction).
    pub async fn revoked_ctis(&self, cutoff: i64) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        match self {
            Store::Sqlite(s) => s.revoked_ctis(cutoff).await,
        }
    }

    /// A host's recorded events, oldest first.
    pub async fn host_events(&self, host_id: &str) -> Result<Vec<HostEvent>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_events(host_id).await,
        }
    }

    /// Record `count` synthetic revoked tokens (benchmarks and tests of the
    /// status list at scale). Returns the new status version.
    pub async fn insert_revoked_tokens_for_bench(
        &self,
        ctis: &[Vec<u8>],
        exp: i64,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_revoked_tokens_for_bench(ctis, exp).await,
        }
    }
}
