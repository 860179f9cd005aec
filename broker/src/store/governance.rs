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
    pub revoked_at: Option<i64>,
    /// Why it was revoked (`host_failed`, an operator's reason, ...).
    pub revocation_reason: Option<String>,
}

/// One entry of a host's history (reboots, state changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostEvent {
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

/// The event kinds that record a host's status change: the kind is the
/// status entered (`reinstated`: back to `enrolled`).
pub const STATUS_EVENT_KINDS: [&str; 6] = [
    "enrolled",
    "trusted",
    "failed",
    "revoked",
    "stale",
    "reinstated",
];

/// Most events one host-event read returns.
pub const MAX_HOST_EVENTS: u32 = 1000;

/// Which of a host's events to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEvents {
    /// Every event: reboots, clock refusals, token revocations, status
    /// changes.
    All,
    /// Status changes only ([`STATUS_EVENT_KINDS`]).
    StatusChanges,
}

impl HostEvents {
    /// Whether the read keeps status changes only (as the backends bind it).
    pub fn status_only(self) -> bool {
        self == HostEvents::StatusChanges
    }
}

/// [`STATUS_EVENT_KINDS`] as an SQL list of literals (constants, so
/// nothing is interpolated from input).
pub(super) fn status_kinds_sql() -> String {
    STATUS_EVENT_KINDS
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
