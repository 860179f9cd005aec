//! One pure decision per broker request.
//!
//! The broker handles a request in one pass: it **reads** the host's prior
//! state once, calls one function of this module once to **decide**, and
//! **applies** the resulting [`Decision`] as one state change in one
//! transaction that re-checks the preconditions the decision was taken on
//! (see `docs/architecture.md`). Everything that decides lives here, so it is
//! tested without a database:
//!
//! * [`appraisal::decide`]: a TPM quote or an SEV-SNP report (with or without
//!   a token request): the final verdict, the host's next status and why, the
//!   TPM clock baseline, whether the IMA cursor moves, the token to mint or
//!   why none is, and the audit leaves.
//! * [`grant::signed_request`]: a token on a request signed by the host's
//!   request key (no quote).
//! * [`grant::host_may_derive`]: whether a host's tokens may still have
//!   children.
//! * [`claims`]: the claims of every execution token (TPM, SEV-SNP and
//!   request-key tokens share one builder).
//!
//! Pure: no I/O, no clock reads; `now` is an argument.

pub mod appraisal;
pub mod claims;
pub mod grant;

use serde::Serialize;

use crate::policy::{Failure, Policy, WorkloadRule};

pub use appraisal::{decide, Appraised, ClockUpdate, Decision, EvidenceKind, Input};

/// Lifecycle of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Enrolled (AK proven by credential activation), not yet attested.
    Enrolled,
    /// Last appraisal passed.
    Trusted,
    /// Last appraisal failed.
    Failed,
    /// Revoked by an operator.
    Revoked,
    /// No passing attestation for longer than the configured window.
    Stale,
}

impl HostStatus {
    /// The status's stable name (as stored and served).
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Enrolled => "enrolled",
            HostStatus::Trusted => "trusted",
            HostStatus::Failed => "failed",
            HostStatus::Revoked => "revoked",
            HostStatus::Stale => "stale",
        }
    }

    /// Parse a stable name; `None` for anything else.
    pub fn from_name(s: &str) -> Option<HostStatus> {
        Some(match s {
            "enrolled" => HostStatus::Enrolled,
            "trusted" => HostStatus::Trusted,
            "failed" => HostStatus::Failed,
            "revoked" => HostStatus::Revoked,
            "stale" => HostStatus::Stale,
            _ => return None,
        })
    }
}

impl std::fmt::Display for HostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no token is minted for a request. Each variant has a stable
/// [`Denial::code`] that clients see; [`std::fmt::Display`] says why in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The appraisal did not affirm (its failures say why).
    #[error("denied: {}", first_failure(.failures))]
    Appraisal { failures: Vec<Failure> },
    /// The host was revoked by an operator.
    #[error("host {host} was revoked by an operator")]
    HostRevoked { host: String },
    /// The host is not trusted (`failed`, `stale` or never attested).
    #[error("host {host} is {status}; it gets no tokens")]
    HostNotTrusted { host: String, status: HostStatus },
    /// The host's last passing appraisal is older than allowed for a
    /// request that carries no fresh evidence.
    #[error("host {host} last passed an appraisal at {last_pass:?}, more than {max_age_secs} s before {now}; attest with a quote")]
    HostNotFresh {
        host: String,
        last_pass: Option<i64>,
        max_age_secs: i64,
        now: i64,
    },
    /// The policy refuses the workload on this host.
    #[error("denied: {failure}")]
    Workload { failure: Failure },
}

fn first_failure(failures: &[Failure]) -> String {
    failures
        .first()
        .map_or_else(|| "appraisal failed".to_owned(), ToString::to_string)
}

impl Denial {
    /// Stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::Appraisal { .. } | Denial::Workload { .. } => "denied",
            Denial::HostRevoked { .. } => "host_revoked",
            Denial::HostNotTrusted { status, .. } => match status {
                HostStatus::Failed => "host_failed",
                HostStatus::Stale => "host_stale",
                HostStatus::Revoked => "host_revoked",
                HostStatus::Enrolled | HostStatus::Trusted => "host_not_attested",
            },
            Denial::HostNotFresh { .. } => "host_not_fresh",
        }
    }
}

/// A token the decision allows: the policy's rule for the workload and its
/// lifetime (the rule's, capped by the policy's maximum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub rule: WorkloadRule,
    pub iat: i64,
    pub exp: i64,
}

impl Grant {
    /// The grant for `rule` under `policy` at `now`.
    pub fn new(policy: &Policy, rule: &WorkloadRule, now: i64) -> Grant {
        let lifetime = i64::from(rule.lifetime_secs.min(policy.max_lifetime_secs));
        Grant {
            rule: rule.clone(),
            iat: now,
            exp: now.saturating_add(lifetime),
        }
    }
}

/// What a token request asks for (the workload and its measured digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadRequest<'a> {
    pub workload: &'a str,
    pub digest: &'a [u8],
}

/// The policy's rule for a workload on the host's group, or the failure
/// that refuses it.
pub fn workload_rule<'p>(
    policy: &'p Policy,
    group: Option<&str>,
    host: &str,
    req: WorkloadRequest<'_>,
) -> Result<&'p WorkloadRule, Failure> {
    let group = match group {
        Some(name) => policy
            .groups
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| Failure::NoGroupForHost {
                host: host.to_owned(),
            })?,
        None => policy.group_for(host)?,
    };
    policy.check_workload(group, req.workload, req.digest)
}
