//! TPM quotes: pick the quote-only or the log appraisal, resume IMA from the
//! host's stored cursor, and say whether a verified boot log came with the
//! quote. The EK trust store for enrollment is [`trust`].

pub mod trust;

use verifier_lib::api::TpmEvidence;
use verifier_lib::appraisal::{
    appraise_tpm, appraise_tpm_with_logs, ImaState, LogEvidenceRef, TpmAppraisal, TpmEvidenceRef,
};
use verifier_lib::crypto::HashAlg;
use verifier_lib::policy::{EvidenceStage, Failure, Policy};

use crate::store::{HostRecord, ImaCursorRecord};

/// The host's stored IMA state, if it was accepted under this very policy.
pub fn resume_state(cursor: Option<ImaCursorRecord>, policy: &Policy) -> Option<ImaState> {
    cursor
        .filter(|r| r.policy_hash == policy.hash_hex())
        .map(|r| r.state)
}

/// Whether the host's group appraises an IMA list.
pub fn group_uses_ima(policy: &Policy, host_id: &str) -> bool {
    policy.group_for(host_id).is_ok_and(|g| g.appraises_ima())
}

/// Appraise `evidence`: with its logs when it carries any or the host's
/// group has boot/IMA rules, otherwise quote-only. Returns the IMA state to
/// store if the decision ends affirming.
pub fn appraise(
    policy: &Policy,
    host: &HostRecord,
    evidence: &TpmEvidence,
    expected_nonce: &[u8],
    ima_resume: Option<&ImaState>,
) -> (TpmAppraisal, Option<ImaState>) {
    let ev = TpmEvidenceRef {
        attest: &evidence.attest,
        signature: &evidence.signature,
        pcrs: &evidence.pcrs,
    };
    let group_wants_logs = policy
        .group_for(&host.id)
        .is_ok_and(|g| g.boot.is_some() || g.appraises_ima());
    if evidence.eventlog.is_none() && evidence.ima.is_none() && !group_wants_logs {
        return (
            appraise_tpm(policy, &host.id, &host.ak_public, ev, expected_nonce),
            None,
        );
    }
    let logs = LogEvidenceRef {
        eventlog: evidence.eventlog.as_deref(),
        ima: evidence.ima.as_deref(),
        ima_offset: evidence.ima_offset,
    };
    let started = std::time::Instant::now();
    let a = appraise_tpm_with_logs(
        policy,
        &host.id,
        &host.ak_public,
        ev,
        expected_nonce,
        logs,
        ima_resume,
    );
    tracing::debug!(
        host_id = %host.id,
        ima_new_entries = a.ima_new_entries,
        ima_restarted = a.ima_restarted,
        quirk = ?a.quirk,
        elapsed_us = started.elapsed().as_micros() as u64,
        "appraised quote with logs"
    );
    (a.tpm, a.ima_state)
}

/// Whether the evidence carried a TCG event log that the appraisal checked
/// against the quote without finding fault: a boot log of the current boot
/// (its replay gives the quoted PCRs).
pub fn verified_boot_log(sent: bool, appraisal: &TpmAppraisal) -> bool {
    sent && appraisal.authentic()
        && !appraisal.failures.iter().any(|f| {
            matches!(
                f,
                Failure::EventLogPcrMismatch { .. }
                    | Failure::EventLogPcrNotQuoted { .. }
                    | Failure::LogMissing { .. }
                    | Failure::EvidenceRejected {
                        stage: EvidenceStage::Eventlog,
                        ..
                    }
            )
        })
}

/// SHA-256 over the evidence as received (recorded with the appraisal).
pub fn evidence_digest(evidence: &TpmEvidence) -> Vec<u8> {
    HashAlg::Sha256.digest_parts([
        evidence.attest.as_slice(),
        evidence.signature.as_slice(),
        serde_json::to_string(&evidence.pcrs)
            .unwrap_or_default()
            .as_bytes(),
    ])
}
