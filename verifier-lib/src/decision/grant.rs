//! Decisions for token requests that carry no fresh evidence: requests
//! signed by the host's request key, and derived (child) tokens.

use crate::policy::Policy;

use super::{workload_rule, Denial, Grant, HostStatus, WorkloadRequest};

/// The host as read for a request without fresh evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStanding<'a> {
    pub host_id: &'a str,
    pub status: HostStatus,
    /// Time of the host's last passing appraisal.
    pub last_pass: Option<i64>,
}

impl HostStanding<'_> {
    /// The host must be trusted with a passing appraisal at or after
    /// `now - max_age_secs` (a `max_age_secs` of 0 or less allows none).
    /// Returns the time of that appraisal.
    pub fn require_fresh(&self, max_age_secs: i64, now: i64) -> Result<i64, Denial> {
        match self.status {
            HostStatus::Trusted => {}
            HostStatus::Revoked => {
                return Err(Denial::HostRevoked {
                    host: self.host_id.to_owned(),
                })
            }
            status => {
                return Err(Denial::HostNotTrusted {
                    host: self.host_id.to_owned(),
                    status,
                })
            }
        }
        match self.last_pass {
            Some(at) if max_age_secs > 0 && at >= now.saturating_sub(max_age_secs) => Ok(at),
            last_pass => Err(Denial::HostNotFresh {
                host: self.host_id.to_owned(),
                last_pass,
                max_age_secs,
                now,
            }),
        }
    }
}

/// A token on a signed request: the grant, the time of the appraisal it
/// rests on, and the oldest passing appraisal the store may still accept
/// when it applies the decision (the precondition it re-checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedGrant {
    pub grant: Grant,
    pub appraised_at: i64,
    pub fresh_since: i64,
}

/// Whether a host may register a request key or have a signed request
/// honoured: trusted, with a passing appraisal within `max_age_secs`.
/// Every other state (failed, stale, never attested) is
/// [`Denial::HostNotFresh`] — the client's remedy is the same: attest with a
/// quote. A revoked host is [`Denial::HostRevoked`]. Returns the time of the
/// passing appraisal.
pub fn request_key_host(
    host: HostStanding<'_>,
    max_age_secs: i64,
    now: i64,
) -> Result<i64, Denial> {
    match host.require_fresh(max_age_secs, now) {
        Err(Denial::HostNotTrusted { host: id, .. }) => Err(Denial::HostNotFresh {
            host: id,
            last_pass: host.last_pass,
            max_age_secs,
            now,
        }),
        other => other,
    }
}

/// Decide a token request signed by the host's (already verified) request
/// key: the host must be trusted and freshly appraised
/// ([`request_key_host`]), and the policy must allow the workload on its
/// group.
pub fn signed_request(
    host: HostStanding<'_>,
    max_age_secs: i64,
    policy: &Policy,
    request: WorkloadRequest<'_>,
    now: i64,
) -> Result<SignedGrant, Denial> {
    let appraised_at = request_key_host(host, max_age_secs, now)?;
    let rule = workload_rule(policy, None, host.host_id, request)
        .map_err(|failure| Denial::Workload { failure })?;
    Ok(SignedGrant {
        grant: Grant::new(policy, rule, now),
        appraised_at,
        fresh_since: now.saturating_sub(max_age_secs),
    })
}

/// Whether a host's tokens may get children: it must be trusted with a
/// passing appraisal within `stale_after_secs`. Returns the oldest passing
/// appraisal the store may accept when it applies the decision.
pub fn host_may_derive(
    host: HostStanding<'_>,
    stale_after_secs: i64,
    now: i64,
) -> Result<i64, Denial> {
    match host.require_fresh(stale_after_secs, now) {
        Ok(_) => Ok(now.saturating_sub(stale_after_secs)),
        // A trusted host without a pass in the staleness window is stale,
        // whether or not the sweeper has marked it yet.
        Err(Denial::HostNotFresh { host, .. }) => Err(Denial::HostNotTrusted {
            host,
            status: HostStatus::Stale,
        }),
        Err(d) => Err(d),
    }
}
