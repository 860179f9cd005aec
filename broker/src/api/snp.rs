//! `/v1/snp/*`: SEV-SNP challenges, appraisals and execution tokens — the
//! same nonces, store, policy and tokens as the TPM path (docs/api.md,
//! "SEV-SNP"). Thin: parse, call `crate::decision`, answer.

use axum::extract::State;
use axum::Json;
use verifier_lib::api::{
    AppraisalResponse, ChallengeRequest, ChallengeResponse, SnpAttestRequest, SnpTokenRequest,
    TokenResponse,
};
use verifier_lib::decision::{Denial, HostStatus};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::snp::expected_report_data;
use verifier_lib::snp_appraisal::is_snp_host_id;

use super::attest::{request_fields, token_response};
use super::json::ApiJson;
use super::source::Source;
use super::ApiError;
use crate::decision::appraisal::{self, TokenAsk};
use crate::decision::{nonce, DecisionError};
use crate::state::AppState;

/// The host id must be an SNP host id.
fn check_host_id(host_id: &str) -> Result<(), ApiError> {
    if is_snp_host_id(host_id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_snp_host_id",
            format!("{host_id:?} is not an SNP host id (snp- and 32 hex digits)"),
        ))
    }
}

/// `POST /v1/snp/challenge`: a single-use nonce for an SNP host that some
/// policy group with a `[groups.snp]` table covers.
#[utoipa::path(
    post,
    path = "/v1/snp/challenge",
    operation_id = "snp_challenge",
    tag = "sev-snp",
    request_body = ChallengeRequest,
    responses((status = 200, description = "A single-use nonce for an SNP report", body = ChallengeResponse), super::openapi::ApiErrors)
)]
pub async fn challenge(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    if st.snp.is_none() {
        return Err(DecisionError::SnpUnavailable.into());
    }
    check_host_id(&req.host_id)?;
    if let Some(h) = st.store.host(&req.host_id).await? {
        if h.status == HostStatus::Revoked {
            return Err(DecisionError::Denied {
                denial: Denial::HostRevoked { host: h.id },
                appraisal: None,
            }
            .into());
        }
    }
    let policy = st.policy.current();
    match policy.group_for(&req.host_id) {
        Ok(g) if g.snp.is_some() => {}
        Ok(g) => {
            return Err(DecisionError::SnpNotAllowed {
                reason: format!("policy group {} has no [groups.snp] table", g.name),
            }
            .into())
        }
        Err(f) => {
            return Err(DecisionError::SnpNotAllowed {
                reason: f.to_string(),
            }
            .into())
        }
    }
    let issued = nonce::issue(&st, &req.host_id).await?;
    Ok(Json(ChallengeResponse {
        nonce: issued.nonce,
        expires_at: issued.expires_at,
        pcr_selection: Vec::new(),
        policy_id: policy.id.clone(),
        ima_entries_known: None,
        ima_reset_count: None,
        ima_restart_count: None,
    }))
}

/// `POST /v1/snp/attest`: appraise a report whose REPORT_DATA is
/// SHA-512(nonce ‖ attester_key).
#[utoipa::path(
    post,
    path = "/v1/snp/attest",
    operation_id = "snp_attest",
    tag = "sev-snp",
    request_body = SnpAttestRequest,
    responses((status = 200, description = "The appraisal of the report", body = AppraisalResponse), super::openapi::ApiErrors)
)]
pub async fn attest(
    State(st): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<SnpAttestRequest>,
) -> Result<Json<AppraisalResponse>, ApiError> {
    check_host_id(&req.host_id)?;
    let key = req.attester_key.as_deref().unwrap_or_default();
    let expected = expected_report_data(&req.nonce, key);
    let outcome = appraisal::snp(
        &st,
        source,
        &req.host_id,
        &req.nonce,
        &expected,
        &req.evidence,
        None,
    )
    .await?;
    Ok(Json(outcome.response))
}

/// `POST /v1/snp/tokens`: appraise a report taken for this very request
/// (REPORT_DATA = SHA-512(nonce ‖ canonical request)) and mint a token.
#[utoipa::path(
    post,
    path = "/v1/snp/tokens",
    operation_id = "snp_token",
    tag = "sev-snp",
    request_body = SnpTokenRequest,
    responses((status = 200, description = "An execution token for the workload", body = TokenResponse), super::openapi::ApiErrors)
)]
pub async fn token(
    State(st): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<SnpTokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let cnf = request_fields(&req.workload_digest, req.cnf.as_deref())?;
    check_host_id(&req.host_id)?;
    let binding = TokenRequestBinding {
        host_id: &req.host_id,
        workload: &req.workload,
        workload_digest: &req.workload_digest,
        cnf_key: req.cnf.as_deref(),
    };
    let expected = binding.snp_report_data(&req.nonce);
    let outcome = appraisal::snp(
        &st,
        source,
        &req.host_id,
        &req.nonce,
        &expected,
        &req.evidence,
        Some(TokenAsk {
            workload: &req.workload,
            digest: &req.workload_digest,
            cnf,
        }),
    )
    .await?;
    token_response(outcome)
}
