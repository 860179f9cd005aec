//! Challenges, appraisals and execution tokens.

use axum::extract::State;
use axum::Json;
use verifier_lib::api::{
    AppraisalResponse, AttestRequest, ChallengeRequest, ChallengeResponse, PcrBankSelection,
    TokenRequest, TokenResponse,
};
use verifier_lib::appraisal::{TpmAppraisal, Verdict};
use verifier_lib::crypto::HashAlg;
use verifier_lib::policy::Policy;
use verifier_lib::request::TokenRequestBinding;

use super::json::ApiJson;
use super::{random_bytes, ApiError};
use crate::audit::decisions as audit_log;
use crate::mint;
use crate::state::AppState;
use crate::store::audit::StateChange;
use crate::store::{AppraisalRecord, HostRecord, HostStatus, NonceProblem};

/// `POST /v1/challenge`: a single-use nonce bound to the host.
pub async fn challenge(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let host = enrolled_host(&st, &req.host_id).await?;
    let policy = st.policy.current();
    let selection = policy
        .group_for(&host.id)
        .map(|g| g.pcr_selection())
        .unwrap_or_default()
        .into_iter()
        .map(|(bank, pcrs)| PcrBankSelection { bank, pcrs })
        .collect();
    let nonce = random_bytes::<32>()?.to_vec();
    let expires_at = st.now() + st.config.nonces.ttl_secs;
    let issued = audit_log::nonce_issued(&host.id, &nonce, st.now());
    let change = StateChange::Nonce {
        nonce: nonce.clone(),
        host_id: host.id.clone(),
        expires_at,
    };
    st.audit.append(change, vec![issued]).await?;
    let mut resp = ChallengeResponse {
        nonce,
        expires_at,
        pcr_selection: selection,
        policy_id: policy.id.clone(),
        ima_entries_known: None,
        ima_reset_count: None,
        ima_restart_count: None,
    };
    super::attest_logs::fill_challenge(&st, &host.id, &policy, &mut resp).await?;
    Ok(Json(resp))
}

/// `POST /v1/attest`: appraise a quote; the host's status follows.
pub async fn attest(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<AttestRequest>,
) -> Result<Json<AppraisalResponse>, ApiError> {
    let host = enrolled_host(&st, &req.host_id).await?;
    consume_nonce(&st, &req.nonce, &host.id).await?;
    let policy = st.policy.current();
    let (appraisal, ima) =
        super::attest_logs::appraise(&st, &policy, &host, &req.evidence, &req.nonce).await?;
    let appraisal =
        crate::governance::after_quote(&st, &host, req.evidence.eventlog.is_some(), appraisal)
            .await?;
    let cursor = super::attest_logs::cursor(&st, &host, &policy, &appraisal, ima);
    let (response, _) =
        record(&st, &host, &policy, &appraisal, &req.evidence, None, cursor).await?;
    Ok(Json(response))
}

/// `POST /v1/tokens`: appraise a quote taken for this very request and, when
/// everything passes, mint an execution token for the workload.
pub async fn token(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let host = enrolled_host(&st, &req.host_id).await?;
    let cnf = request_fields(&req.workload_digest, req.cnf.as_deref())?;
    consume_nonce(&st, &req.nonce, &host.id).await?;
    let binding = TokenRequestBinding {
        host_id: &host.id,
        workload: &req.workload,
        workload_digest: &req.workload_digest,
        cnf_key: req.cnf.as_deref(),
    };
    let expected = binding.quote_nonce(&req.nonce);
    let policy = st.policy.current();
    let (appraisal, ima) =
        super::attest_logs::appraise(&st, &policy, &host, &req.evidence, &expected).await?;
    let mut appraisal =
        crate::governance::after_quote(&st, &host, req.evidence.eventlog.is_some(), appraisal)
            .await?;

    let rule = workload_rule(
        &policy,
        appraisal.group.as_deref(),
        &mut appraisal.verdict,
        &mut appraisal.failures,
        &req.workload,
        &req.workload_digest,
    );
    let now = st.now();
    // Minted inside the audit writer, so the token carries the index of its
    // own `token_minted` leaf and exists only if that leaf commits.
    let mint: Option<audit_log::MintFn> = match (&appraisal.verdict, rule) {
        (Verdict::Affirming, Some(rule)) => {
            let (st2, policy2, host_id, appraisal2, req2) = (
                st.clone(),
                policy.clone(),
                host.id.clone(),
                appraisal.clone(),
                req.clone(),
            );
            Some(Box::new(move |audit_index| {
                mint::execution_token_at(
                    &st2,
                    &policy2,
                    &host_id,
                    &rule,
                    &req2,
                    cnf,
                    &appraisal2,
                    now,
                    Some(audit_index),
                )
            }))
        }
        _ => None,
    };
    let cursor = super::attest_logs::cursor(&st, &host, &policy, &appraisal, ima);
    let (response, minted) =
        record(&st, &host, &policy, &appraisal, &req.evidence, mint, cursor).await?;
    match minted {
        Some(m) => Ok(Json(TokenResponse {
            token: m.token,
            cti: m.record.cti,
            expires_at: m.record.exp,
            appraisal: response,
        })),
        None => Err(denied(&response)),
    }
}

/// After an affirming appraisal, the policy's rule for `workload` with
/// `digest` on the host's group; a refusal turns the appraisal into a
/// contraindicated one carrying the failure.
pub(super) fn workload_rule(
    policy: &Policy,
    group: Option<&str>,
    verdict: &mut Verdict,
    failures: &mut Vec<verifier_lib::policy::Failure>,
    workload: &str,
    digest: &[u8],
) -> Option<verifier_lib::policy::WorkloadRule> {
    if *verdict != Verdict::Affirming {
        return None;
    }
    let group = group.and_then(|g| policy.groups.iter().find(|x| x.name == g))?;
    match policy.check_workload(group, workload, digest) {
        Ok(r) => Some(r.clone()),
        Err(f) => {
            failures.push(f);
            *verdict = Verdict::Contraindicated;
            None
        }
    }
}

/// The fields every token request shares: a 32-byte workload digest and,
/// when given, the workload's `cnf` COSE_Key (parsed).
pub(super) fn request_fields(
    workload_digest: &[u8],
    cnf: Option<&[u8]>,
) -> Result<Option<verifier_lib::token::VerifyingKey>, ApiError> {
    if workload_digest.len() != 32 {
        return Err(ApiError::bad_request(
            "invalid_workload_digest",
            format!(
                "workload_digest: expected 32 bytes (SHA-256), got {}",
                workload_digest.len()
            ),
        ));
    }
    cnf.map(|bytes| {
        mint::parse_cnf(bytes)
            .map_err(|e| ApiError::bad_request("invalid_cnf", format!("cnf: {e}")))
    })
    .transpose()
}

pub(super) fn denied(r: &AppraisalResponse) -> ApiError {
    let first = r
        .failures
        .first()
        .map(|f| f.to_string())
        .unwrap_or_else(|| "appraisal failed".into());
    ApiError::forbidden("denied", format!("denied: {first}"))
        .with_details(serde_json::to_value(r).unwrap_or(serde_json::Value::Null))
}

/// The host, which must be enrolled and not revoked.
pub(super) async fn enrolled_host(st: &AppState, host_id: &str) -> Result<HostRecord, ApiError> {
    let host = st.store.host(host_id).await?.ok_or_else(|| {
        ApiError::not_found("unknown_host", format!("no enrolled host {host_id}"))
    })?;
    if host.status == HostStatus::Revoked {
        return Err(ApiError::forbidden(
            "host_revoked",
            format!("host {host_id} was revoked by an operator"),
        ));
    }
    Ok(host)
}

pub(super) async fn consume_nonce(
    st: &AppState,
    nonce: &[u8],
    host_id: &str,
) -> Result<(), ApiError> {
    match st.store.consume_nonce(nonce, host_id, st.now()).await? {
        Ok(()) => Ok(()),
        Err(p) => Err(ApiError::forbidden(
            match p {
                NonceProblem::Unknown => "nonce_unknown",
                NonceProblem::IssuedToAnotherHost => "nonce_other_host",
                NonceProblem::Expired => "nonce_expired",
                NonceProblem::AlreadyUsed => "nonce_reused",
            },
            match p {
                NonceProblem::Unknown => "nonce was not issued by this broker",
                NonceProblem::IssuedToAnotherHost => "nonce was issued to another host",
                NonceProblem::Expired => "nonce expired",
                NonceProblem::AlreadyUsed => "nonce was already used",
            },
        )),
    }
}

/// Store the appraisal (and token) in one transaction and build the answer.
///
/// Evidence that did not authenticate (bad signature, wrong nonce) is
/// recorded as a refused attempt but does not change the host's status:
/// otherwise anyone able to reach the API could mark any host failed. Genuine
/// evidence that fails policy marks the host failed.
async fn record(
    st: &AppState,
    host: &HostRecord,
    policy: &Policy,
    appraisal: &TpmAppraisal,
    evidence: &verifier_lib::api::TpmEvidence,
    mint: Option<audit_log::MintFn>,
    ima_cursor: Option<crate::store::ImaCursorRecord>,
) -> Result<(AppraisalResponse, Option<mint::Minted>), ApiError> {
    let now = st.now();
    // A refused workload (unknown name, digest not allowed) is a fault of the
    // request, not of the host: it must not fail the host (and so revoke
    // every token the host holds).
    let host_fault = appraisal.failures.iter().any(|f| {
        !matches!(
            f,
            verifier_lib::policy::Failure::WorkloadUnknown { .. }
                | verifier_lib::policy::Failure::WorkloadDigestNotAllowed { .. }
        )
    });
    let status = match (appraisal.verdict, appraisal.authentic()) {
        (Verdict::Affirming, _) => HostStatus::Trusted,
        (Verdict::Contraindicated, true) if !host_fault => HostStatus::Trusted,
        (Verdict::Contraindicated, true) => HostStatus::Failed,
        (Verdict::Contraindicated, false) => host.status,
    };
    let failures = serde_json::to_string(&appraisal.failures)
        .map_err(|e| ApiError::internal("encoding", e))?;
    let evidence_digest = HashAlg::Sha256.digest_parts([
        evidence.attest.as_slice(),
        evidence.signature.as_slice(),
        serde_json::to_string(&evidence.pcrs)
            .unwrap_or_default()
            .as_bytes(),
    ]);
    let rec = AppraisalRecord {
        host_id: host.id.clone(),
        at: now,
        verdict: appraisal.verdict.as_str().to_owned(),
        policy_id: policy.id.clone(),
        policy_hash: policy.hash_hex(),
        evidence_digest,
        failures,
    };
    let outcome = audit_log::AppraisalOutcome {
        rec: &rec,
        previous: host.status,
        status,
        policy_hash: &policy.hash,
        failures: &appraisal.failures,
        ima_cursor,
    };
    let minted = audit_log::record_appraisal(st, outcome, mint).await?;
    if status == HostStatus::Failed {
        st.governance.poke();
    }
    for f in &appraisal.failures {
        tracing::warn!(host_id = %host.id, failure = %f, "appraisal failure");
    }
    let response = AppraisalResponse {
        host_id: host.id.clone(),
        verdict: rec.verdict,
        host_status: status.as_str().to_owned(),
        policy_id: policy.id.clone(),
        policy_hash: policy.hash_hex(),
        appraised_at: now,
        failures: appraisal.failures.clone(),
    };
    Ok((response, minted))
}
