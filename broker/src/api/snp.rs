//! SEV-SNP challenges, appraisals and execution tokens: the same nonces,
//! store, policy and tokens as the TPM path (see docs/api.md, "SEV-SNP").

use axum::extract::State;
use axum::Json;
use verifier_lib::api::{
    AppraisalResponse, ChallengeRequest, ChallengeResponse, SnpAttestRequest, SnpEvidence,
    SnpTokenRequest, TokenResponse,
};
use verifier_lib::appraisal::Verdict;
use verifier_lib::crypto::HashAlg;
use verifier_lib::policy::Policy;
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::snp::expected_report_data;
use verifier_lib::snp_appraisal::{is_snp_host_id, SnpAppraisal};

use super::attest::{consume_nonce, denied, request_fields, workload_rule};
use super::json::ApiJson;
use super::{random_bytes, ApiError};
use crate::audit::decisions as audit_log;
use crate::mint::Minted;
use crate::mint_snp::{snp_execution_token, SnpTokenInput};
use crate::snp::SnpService;
use crate::state::AppState;
use crate::store::audit::StateChange;
use crate::store::{AppraisalRecord, HostStatus, SnpHostRecord};

fn service(st: &AppState) -> Result<&SnpService, ApiError> {
    st.snp.as_deref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "snp_unavailable",
            "this broker does not appraise SEV-SNP evidence",
        )
    })
}

/// The host id must be an SNP host id, and the host not revoked.
async fn check_host(st: &AppState, host_id: &str) -> Result<(), ApiError> {
    if !is_snp_host_id(host_id) {
        return Err(ApiError::bad_request(
            "invalid_snp_host_id",
            format!("{host_id:?} is not an SNP host id (snp- and 32 hex digits)"),
        ));
    }
    if let Some(h) = st.store.host(host_id).await? {
        if h.status == HostStatus::Revoked {
            return Err(ApiError::forbidden(
                "host_revoked",
                format!("host {host_id} was revoked by an operator"),
            ));
        }
    }
    Ok(())
}

/// `POST /v1/snp/challenge`: a single-use nonce for an SNP host that some
/// policy group with a `[groups.snp]` table covers.
pub async fn challenge(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    service(&st)?;
    check_host(&st, &req.host_id).await?;
    let policy = st.policy.current();
    match policy.group_for(&req.host_id) {
        Ok(g) if g.snp.is_some() => {}
        Ok(g) => {
            return Err(ApiError::forbidden(
                "snp_not_allowed",
                format!("policy group {} has no [groups.snp] table", g.name),
            ))
        }
        Err(f) => return Err(ApiError::forbidden("snp_not_allowed", f.to_string())),
    }
    let nonce = random_bytes::<32>()?.to_vec();
    let expires_at = st.now() + st.config.nonces.ttl_secs;
    let issued = audit_log::nonce_issued(&req.host_id, &nonce, st.now());
    let change = StateChange::Nonce {
        nonce: nonce.clone(),
        host_id: req.host_id.clone(),
        expires_at,
    };
    st.audit.append(change, vec![issued]).await?;
    Ok(Json(ChallengeResponse {
        nonce,
        expires_at,
        pcr_selection: Vec::new(),
        policy_id: policy.id.clone(),
        ima_entries_known: None,
        ima_reset_count: None,
        ima_restart_count: None,
    }))
}

/// `POST /v1/snp/attest`: appraise a report whose REPORT_DATA is
/// SHA-512(nonce ‖ attester_key).
pub async fn attest(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SnpAttestRequest>,
) -> Result<Json<AppraisalResponse>, ApiError> {
    let snp = service(&st)?;
    check_host(&st, &req.host_id).await?;
    consume_nonce(&st, &req.nonce, &req.host_id).await?;
    let key = req.attester_key.as_deref().unwrap_or_default();
    let expected = expected_report_data(&req.nonce, key);
    let policy = st.policy.current();
    let (appraisal, assembled) = snp
        .appraise(&policy, &req.host_id, &req.evidence, &expected, st.now())
        .await;
    let leaf = assembled.as_ref().map(|a| a.leaf.as_slice());
    let (response, _) = record(
        &st,
        &req.host_id,
        &policy,
        &appraisal,
        &req.evidence,
        leaf,
        None,
    )
    .await?;
    Ok(Json(response))
}

/// `POST /v1/snp/tokens`: appraise a report taken for this very request
/// (REPORT_DATA = SHA-512(nonce ‖ canonical request)) and mint a token.
pub async fn token(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SnpTokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let snp = service(&st)?;
    let cnf = request_fields(&req.workload_digest, req.cnf.as_deref())?;
    check_host(&st, &req.host_id).await?;
    consume_nonce(&st, &req.nonce, &req.host_id).await?;
    let binding = TokenRequestBinding {
        host_id: &req.host_id,
        workload: &req.workload,
        workload_digest: &req.workload_digest,
        cnf_key: req.cnf.as_deref(),
    };
    let expected = binding.snp_report_data(&req.nonce);
    let policy = st.policy.current();
    let (mut appraisal, assembled) = snp
        .appraise(&policy, &req.host_id, &req.evidence, &expected, st.now())
        .await;

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
    let mint: Option<audit_log::MintFn> = match (&appraisal.verdict, rule, &appraisal.verified) {
        (Verdict::Affirming, Some(rule), Some(verified)) => {
            let (st2, policy2, verified) = (st.clone(), policy.clone(), verified.clone());
            let (host_id, nonce, digest) = (
                req.host_id.clone(),
                req.nonce.clone(),
                req.workload_digest.clone(),
            );
            Some(Box::new(move |audit_index| {
                snp_execution_token(
                    &st2,
                    &policy2,
                    &rule,
                    SnpTokenInput {
                        host_id: &host_id,
                        nonce: &nonce,
                        workload_digest: &digest,
                    },
                    cnf,
                    &verified,
                    now,
                    Some(audit_index),
                )
            }))
        }
        _ => None,
    };
    let (response, minted) = record(
        &st,
        &req.host_id,
        &policy,
        &appraisal,
        &req.evidence,
        assembled.as_ref().map(|a| a.leaf.as_slice()),
        mint,
    )
    .await?;
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

#[allow(clippy::too_many_arguments)]
/// Store the appraisal (registering a new host on its first affirming
/// appraisal, and the token) in one transaction and build the answer.
///
/// As on the TPM path, evidence that did not authenticate changes no host
/// status; genuine evidence that fails policy marks a registered host failed.
async fn record(
    st: &AppState,
    host_id: &str,
    policy: &Policy,
    appraisal: &SnpAppraisal,
    evidence: &SnpEvidence,
    leaf: Option<&[u8]>,
    mint: Option<audit_log::MintFn>,
) -> Result<(AppraisalResponse, Option<Minted>), ApiError> {
    let now = st.now();
    let existing = st.store.host(host_id).await?;
    let status = match (appraisal.verdict, appraisal.authentic(), &existing) {
        (Verdict::Affirming, _, _) => HostStatus::Trusted,
        (Verdict::Contraindicated, true, _) => HostStatus::Failed,
        (Verdict::Contraindicated, false, Some(h)) => h.status,
        (Verdict::Contraindicated, false, None) => HostStatus::Enrolled,
    };
    let register = match (&appraisal.verdict, &appraisal.verified, &existing) {
        (Verdict::Affirming, Some(v), None) => Some(SnpHostRecord {
            host_id: host_id.to_owned(),
            chip_id: v.report.chip_id.to_vec(),
            measurement: v.measurement.to_vec(),
            host_data: v.report.host_data.to_vec(),
            product: format!("{:?}", v.product),
            signer: format!("{:?}", v.signer).to_lowercase(),
            signer_cert_digest: HashAlg::Sha256.digest(leaf.unwrap_or_default()),
            registered_at: now,
        }),
        _ => None,
    };
    let failures = serde_json::to_string(&appraisal.failures)
        .map_err(|e| ApiError::internal("encoding", e))?;
    let mut parts: Vec<&[u8]> = vec![
        evidence.report.as_slice(),
        evidence.vcek.as_deref().unwrap_or_default(),
    ];
    parts.extend(evidence.chain.iter().map(Vec::as_slice));
    let rec = AppraisalRecord {
        host_id: host_id.to_owned(),
        at: now,
        verdict: appraisal.verdict.as_str().to_owned(),
        policy_id: policy.id.clone(),
        policy_hash: policy.hash_hex(),
        evidence_digest: HashAlg::Sha256.digest_parts(parts),
        failures,
    };
    let registering = register.is_some();
    let outcome = audit_log::AppraisalOutcome {
        rec: &rec,
        // A host registering now starts `enrolled`; an unregistered one
        // has no status to change.
        previous: match &existing {
            Some(h) => h.status,
            None if registering => HostStatus::Enrolled,
            None => status,
        },
        status,
        policy_hash: &policy.hash,
        failures: &appraisal.failures,
        ima_cursor: None,
    };
    let minted = audit_log::record_snp_appraisal(st, outcome, register, mint).await?;
    if status == HostStatus::Failed {
        st.governance.poke();
    }
    if registering {
        tracing::info!(%host_id, "SEV-SNP host registered at its first affirming appraisal");
    }
    for f in &appraisal.failures {
        tracing::warn!(%host_id, failure = %f, "SEV-SNP appraisal failure");
    }
    let response = AppraisalResponse {
        host_id: host_id.to_owned(),
        verdict: rec.verdict,
        host_status: match (&existing, registering) {
            (None, false) => "unregistered".to_owned(),
            _ => status.as_str().to_owned(),
        },
        policy_id: policy.id.clone(),
        policy_hash: policy.hash_hex(),
        appraised_at: now,
        failures: appraisal.failures.clone(),
    };
    Ok((response, minted))
}
