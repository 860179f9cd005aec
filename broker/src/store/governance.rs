//! Records of continuous governance: token
//! lineage state, revocation outcomes and host events. Revocations,
//! reinstatement, staleness and derived tokens are decisions: they are
//! `StateChange`s applied by the audit writer together with their audit
//! leaves (`store::audit`), by the rules in `store::apply`.

use serde::Serialize;

use super::TokenRecord;

/// Why a host went stale, as recorded with it.
pub fn stale_reason(cutoff: i64) -> String {
    format!("no passing attestation since {cutoff}")
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
