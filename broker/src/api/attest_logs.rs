//! The event-log/IMA side of `/v1/attest` and `/v1/tokens`: pick the quote-only
//! or the log appraisal, resume IMA from the host's stored cursor, and store
//! the new cursor with an affirming appraisal, in its transaction.

use verifier_lib::api::{ChallengeResponse, TpmEvidence};
use verifier_lib::appraisal::{
    appraise_tpm, appraise_tpm_with_logs, ImaState, LogEvidenceRef, TpmAppraisal, TpmEvidenceRef,
    Verdict,
};
use verifier_lib::policy::Policy;

use super::ApiError;
use crate::state::AppState;
use crate::store::{HostRecord, ImaCursorRecord};

/// The host's stored IMA state, if it was accepted under this very policy.
async fn stored_state(
    st: &AppState,
    host_id: &str,
    policy: &Policy,
) -> Result<Option<ImaState>, ApiError> {
    Ok(st
        .store
        .ima_cursor(host_id)
        .await?
        .filter(|r| r.policy_hash == policy.hash_hex())
        .map(|r| r.state))
}

/// Tell the attester where its IMA list should resume (groups with IMA rules).
pub(super) async fn fill_challenge(
    st: &AppState,
    host_id: &str,
    policy: &Policy,
    resp: &mut ChallengeResponse,
) -> Result<(), ApiError> {
    let uses_ima = policy.group_for(host_id).is_ok_and(|g| g.ima.is_some());
    if !uses_ima {
        return Ok(());
    }
    if let Some(s) = stored_state(st, host_id, policy).await? {
        resp.ima_entries_known = Some(s.cursor.entries);
        resp.ima_reset_count = Some(s.reset_count);
        resp.ima_restart_count = Some(s.restart_count);
    }
    Ok(())
}

/// Appraise `evidence`: with its logs when it carries any or the host's
/// group has boot/IMA rules, otherwise quote-only. Returns the IMA state to
/// store if the appraisal ends affirming.
pub(super) async fn appraise(
    st: &AppState,
    policy: &Policy,
    host: &HostRecord,
    evidence: &TpmEvidence,
    expected_nonce: &[u8],
) -> Result<(TpmAppraisal, Option<ImaState>), ApiError> {
    let ev = TpmEvidenceRef {
        attest: &evidence.attest,
        signature: &evidence.signature,
        pcrs: &evidence.pcrs,
    };
    let group_wants_logs = policy
        .group_for(&host.id)
        .is_ok_and(|g| g.boot.is_some() || g.ima.is_some());
    if evidence.eventlog.is_none() && evidence.ima.is_none() && !group_wants_logs {
        return Ok((
            appraise_tpm(policy, &host.id, &host.ak_public, ev, expected_nonce),
            None,
        ));
    }
    let stored = stored_state(st, &host.id, policy).await?;
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
        stored.as_ref(),
    );
    tracing::info!(
        host_id = %host.id,
        ima_new_entries = a.ima_new_entries,
        ima_restarted = a.ima_restarted,
        quirk = ?a.quirk,
        elapsed_us = started.elapsed().as_micros() as u64,
        "appraised quote with logs"
    );
    Ok((a.tpm, a.ima_state))
}

/// The IMA cursor to store with the appraisal: only when the final verdict
/// is affirming.
pub(super) fn cursor(
    st: &AppState,
    host: &HostRecord,
    policy: &Policy,
    appraisal: &TpmAppraisal,
    ima: Option<ImaState>,
) -> Option<ImaCursorRecord> {
    match (appraisal.verdict, ima) {
        (Verdict::Affirming, Some(state)) => Some(ImaCursorRecord {
            host_id: host.id.clone(),
            state,
            policy_hash: policy.hash_hex(),
            updated_at: st.now(),
        }),
        _ => None,
    }
}
