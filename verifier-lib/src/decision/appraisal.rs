//! The decision for one appraisal: a TPM quote or an SEV-SNP report, with or
//! without a token request.
//!
//! The rules, the same for TPM and SEV-SNP:
//!
//! * Evidence that did not authenticate (bad signature, wrong nonce, a
//!   report from another host) changes no host's status: otherwise anyone
//!   able to reach the API could fail any host.
//! * TPM: an authenticated quote's clock triple must follow the host's
//!   baseline ([`crate::host_clock::check_progress`]); when it does it becomes
//!   the new baseline, otherwise the refusal is a failure of the appraisal.
//! * Genuine evidence that fails the policy (or the clock check) fails the
//!   host, which revokes its tokens when the change is applied.
//! * A refused workload is a fault of the request, not of the host: it
//!   denies the token and never fails the host.
//! * A revoked host stays revoked whatever the evidence says, and gets no
//!   token.
//! * An SEV-SNP host that is not registered yet registers at its first
//!   affirming appraisal; until then it has no status.

use crate::appraisal::Verdict;
use crate::audit::{self, Decision as LeafDecision, Leaf};
use crate::host_clock::{check_progress, ClockState, ClockTransition, RebootEvidence};
use crate::policy::{Failure, Policy, Warning};

use super::{workload_rule, Denial, Grant, HostStatus, WorkloadRequest};

/// Which kind of evidence was appraised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    Tpm,
    SevSnp,
}

/// What verifier-lib's appraisers found in the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appraised {
    pub kind: EvidenceKind,
    pub verdict: Verdict,
    /// The evidence is genuine and bound to the expected nonce and host.
    pub authentic: bool,
    pub failures: Vec<Failure>,
    /// Risks the policy accepted explicitly (recorded in the leaf).
    pub warnings: Vec<Warning>,
    /// The policy group that applied.
    pub group: Option<String>,
    /// TPM: the verified quote's clock triple.
    pub clock: Option<ClockState>,
    /// TPM: the evidence carried a boot log whose replay gave the quoted PCRs.
    pub new_boot_log: bool,
    /// SHA-256 over the evidence as received (recorded in the leaf).
    pub evidence_digest: Vec<u8>,
    /// SEV-SNP: SHA-256 of the endorsement key certificate (VCEK/VLEK) that
    /// signed the report, recorded when the host registers.
    pub endorsement_digest: Option<Vec<u8>>,
}

/// The host's state as read before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prior {
    /// `None`: no such host (an SEV-SNP host before its registration).
    pub status: Option<HostStatus>,
    /// The TPM clock baseline.
    pub clock: Option<ClockState>,
}

/// Everything one appraisal decision takes.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub host_id: &'a str,
    pub prior: Prior,
    pub appraised: Appraised,
    /// The token request, when the evidence was taken for one.
    pub request: Option<WorkloadRequest<'a>>,
    pub policy: &'a Policy,
    /// Policy of the broker: a reboot needs a verified boot log.
    pub boot_log_required: bool,
    pub now: i64,
}

/// A new TPM clock baseline and how it follows the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockUpdate {
    pub state: ClockState,
    pub transition: ClockTransition,
    /// The quote came with a verified boot log of the current boot.
    pub new_boot_log: bool,
}

/// What one appraisal decided. The broker applies it as one state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub host_id: String,
    /// The final verdict (a refused workload makes it contraindicated).
    pub verdict: Verdict,
    /// Every failure, in the order found.
    pub failures: Vec<Failure>,
    /// Risks the policy accepted explicitly, e.g. a SHA-1 signature.
    pub warnings: Vec<Warning>,
    /// The host's status before (the precondition the change re-checks).
    pub previous: Option<HostStatus>,
    /// The host's status after (`None`: still not registered).
    pub status: Option<HostStatus>,
    /// Why the status changed, when it did.
    pub status_reason: Option<&'static str>,
    /// SEV-SNP: the host registers now.
    pub register: bool,
    /// TPM: the new clock baseline (none when the clock was refused).
    pub clock: Option<ClockUpdate>,
    /// TPM: the clock check refused the quote's clock.
    pub clock_refused: Option<Failure>,
    /// Store the IMA cursor the appraisal reached (final verdict affirming).
    pub advance_ima_cursor: bool,
    /// The token to mint, or why none is (`None` for a plain appraisal).
    pub token: Option<Result<Grant, Denial>>,
    /// The leaves to log, in order, before the token's own leaf.
    pub leaves: Vec<Leaf>,
    /// Whether the evidence authenticated (signature, nonce, key chain). A
    /// decision on evidence that did not changes nothing about the host, so
    /// a broker need not record it one row and leaf at a time: it coalesces
    /// such refusals per source, and forged evidence cannot grow its log.
    pub evidence_authentic: bool,
}

impl Decision {
    /// The host's status as reported to the client.
    pub fn status_name(&self) -> &'static str {
        self.status.map_or("unregistered", HostStatus::as_str)
    }

    /// The host's status changed.
    pub fn status_changed(&self) -> bool {
        self.previous.is_some() && self.previous != self.status || self.register
    }
}

/// Decide one appraisal. See the module documentation for the rules.
pub fn decide(input: Input<'_>) -> Decision {
    let Input {
        host_id,
        prior,
        mut appraised,
        request,
        policy,
        boot_log_required,
        now,
    } = input;

    // The TPM clock, for authenticated quotes only.
    let (clock, clock_refused) = match appraised.clock.filter(|_| appraised.authentic) {
        Some(current) => {
            let boot = RebootEvidence {
                boot_log_required,
                new_boot_log: appraised.new_boot_log,
            };
            match check_progress(prior.clock.as_ref(), &current, boot) {
                Ok(transition) => (
                    Some(ClockUpdate {
                        state: current,
                        transition,
                        new_boot_log: appraised.new_boot_log,
                    }),
                    None,
                ),
                Err(f) => {
                    appraised.failures.push(f.clone());
                    appraised.verdict = Verdict::Contraindicated;
                    (None, Some(f))
                }
            }
        }
        None => (None, None),
    };

    // The host's status follows the evidence, before any workload check.
    let host_verdict = appraised.verdict;
    let revoked = prior.status == Some(HostStatus::Revoked);
    let (status, register, reason) = match (prior.status, host_verdict, appraised.authentic) {
        (Some(HostStatus::Revoked), _, _) => (Some(HostStatus::Revoked), false, None),
        (None, Verdict::Affirming, true) if appraised.kind == EvidenceKind::SevSnp => (
            Some(HostStatus::Trusted),
            true,
            Some("first passing appraisal"),
        ),
        (None, _, _) => (None, false, None),
        (Some(_), Verdict::Affirming, true) => {
            (Some(HostStatus::Trusted), false, Some("passing appraisal"))
        }
        (Some(_), Verdict::Contraindicated, true) => (
            Some(HostStatus::Failed),
            false,
            Some("failing appraisal; its tokens are revoked"),
        ),
        (Some(s), _, false) => (Some(s), false, None),
    };

    // The token: the workload rule applies only to an affirming appraisal.
    let mut verdict = host_verdict;
    let token = request.map(|req| {
        if revoked {
            return Err(Denial::HostRevoked {
                host: host_id.to_owned(),
            });
        }
        if verdict != Verdict::Affirming || status.is_none() {
            return Err(Denial::Appraisal {
                failures: appraised.failures.clone(),
            });
        }
        match workload_rule(policy, appraised.group.as_deref(), host_id, req) {
            Ok(rule) => Ok(Grant::new(policy, rule, now)),
            Err(f) => {
                appraised.failures.push(f.clone());
                verdict = Verdict::Contraindicated;
                Err(Denial::Workload { failure: f })
            }
        }
    });

    let mut decision = Decision {
        host_id: host_id.to_owned(),
        verdict,
        failures: appraised.failures,
        warnings: appraised.warnings,
        previous: prior.status,
        status,
        status_reason: None,
        register,
        clock,
        clock_refused,
        advance_ima_cursor: verdict == Verdict::Affirming && !revoked,
        token,
        leaves: Vec::new(),
        evidence_authentic: appraised.authentic,
    };
    if decision.status_changed() {
        decision.status_reason = reason;
    }
    decision.leaves = leaves(
        &decision,
        policy,
        &appraised.evidence_digest,
        appraised.endorsement_digest.as_deref(),
        now,
    );
    decision
}

/// The decision's leaves: the SEV-SNP registration (an accepted
/// `enrollment`), the `appraisal` (with the clock baseline it sets) and a
/// `host_state_changed` when the status moves.
fn leaves(
    d: &Decision,
    policy: &Policy,
    evidence_digest: &[u8],
    endorsement_digest: Option<&[u8]>,
    now: i64,
) -> Vec<Leaf> {
    let mut out = Vec::with_capacity(3);
    if d.register {
        out.push(Leaf::new(
            now,
            LeafDecision::Enrollment {
                host: d.host_id.clone(),
                accepted: true,
                ek_cert_digest: endorsement_digest.map(<[u8]>::to_vec),
                ak_name: Vec::new(),
                reason: None,
            },
        ));
    }
    out.push(Leaf::new(
        now,
        LeafDecision::Appraisal {
            host: d.host_id.clone(),
            evidence_digest: evidence_digest.to_vec(),
            policy_id: policy.id.clone(),
            policy_hash: policy.hash.clone(),
            verdict: match d.verdict {
                Verdict::Affirming => audit::Verdict::Pass,
                Verdict::Contraindicated => audit::Verdict::Fail,
            },
            failures: d.failures.iter().map(failure_text).collect(),
            tpm_clock: d.clock.map(|c| audit::ClockBaseline {
                reset_count: c.state.reset_count,
                restart_count: c.state.restart_count,
                clock: c.state.clock,
                transition: c.transition.as_str().to_owned(),
            }),
            // Set by the broker, which knows the nonce the decision consumes.
            nonce_digest: None,
            policy_signer: policy.signer.clone(),
            warnings: d.warnings.iter().map(warning_text).collect(),
        },
    ));
    if let (Some(reason), Some(to)) = (d.status_reason, d.status) {
        let from = if d.register {
            HostStatus::Enrolled
        } else {
            d.previous.unwrap_or(HostStatus::Enrolled)
        };
        if from != to {
            out.push(Leaf::new(
                now,
                LeafDecision::HostStateChanged {
                    host: d.host_id.clone(),
                    from: from.as_str().to_owned(),
                    to: to.as_str().to_owned(),
                    reason: reason.to_owned(),
                },
            ));
        }
    }
    out
}

/// A warning as logged: its JSON form (`{"rule": ..., ...}`).
pub fn warning_text(w: &Warning) -> String {
    serde_json::to_string(w).unwrap_or_else(|_| w.to_string())
}

/// A failure as logged: its JSON form (`{"rule": ..., ...}`).
pub fn failure_text(f: &Failure) -> String {
    serde_json::to_string(f).unwrap_or_else(|_| f.to_string())
}
