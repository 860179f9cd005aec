//! `/v1/challenge`, `/v1/attest`, `/v1/tokens`: TPM challenges, appraisals
//! and execution tokens. Thin: parse, call `crate::decision`, answer.

use axum::extract::State;
use axum::Json;
use verifier_lib::api::{
    AppraisalResponse, AttestRequest, ChallengeRequest, ChallengeResponse, PcrBankSelection,
    TokenRequest, TokenResponse,
};
use verifier_lib::decision::{Denial, HostStatus};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::token::VerifyingKey;

use super::json::ApiJson;
use super::source::Source;
use super::ApiError;
use crate::decision::appraisal::{self, TokenAsk};
use crate::decision::{nonce, DecisionError};
use crate::mint;
use crate::state::AppState;
use crate::tee;

/// `POST /v1/challenge`: a single-use nonce bound to the host.
#[utoipa::path(
    post,
    path = "/v1/challenge",
    tag = "attestation",
    request_body = ChallengeRequest,
    responses((status = 200, description = "A single-use nonce and what the quote must cover", body = ChallengeResponse), super::openapi::ApiErrors)
)]
pub async fn challenge(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let host = st
        .store
        .host(&req.host_id)
        .await?
        .ok_or_else(|| DecisionError::UnknownHost {
            host: req.host_id.clone(),
        })?;
    if host.status == HostStatus::Revoked {
        return Err(DecisionError::Denied {
            denial: Denial::HostRevoked { host: host.id },
            appraisal: None,
        }
        .into());
    }
    let policy = st.policy.current();
    let selection = policy
        .group_for(&host.id)
        .map(|g| g.pcr_selection())
        .unwrap_or_default()
        .into_iter()
        .map(|(bank, pcrs)| PcrBankSelection { bank, pcrs })
        .collect();
    let issued = nonce::issue(&st, &host.id).await?;
    let mut resp = ChallengeResponse {
        nonce: issued.nonce,
        expires_at: issued.expires_at,
        pcr_selection: selection,
        policy_id: policy.id.clone(),
        ima_entries_known: None,
        ima_reset_count: None,
        ima_restart_count: None,
    };
    // Tell the attester where its IMA list should resume.
    if tee::tpm::group_uses_ima(&policy, &host.id) {
        if let Some(s) = tee::tpm::resume_state(st.store.ima_cursor(&host.id).await?, &policy) {
            resp.ima_entries_known = Some(s.cursor.entries);
            resp.ima_reset_count = Some(s.reset_count);
            resp.ima_restart_count = Some(s.restart_count);
        }
    }
    Ok(Json(resp))
}

/// `POST /v1/attest`: appraise a quote; the host's status follows.
#[utoipa::path(
    post,
    path = "/v1/attest",
    tag = "attestation",
    request_body = AttestRequest,
    responses((status = 200, description = "The appraisal; the host status follows it", body = AppraisalResponse), super::openapi::ApiErrors)
)]
pub async fn attest(
    State(st): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<AttestRequest>,
) -> Result<Json<AppraisalResponse>, ApiError> {
    let outcome = appraisal::tpm(
        &st,
        source,
        &req.host_id,
        &req.nonce,
        &req.nonce,
        &req.evidence,
        None,
    )
    .await?;
    Ok(Json(outcome.response))
}

/// `POST /v1/tokens`: appraise a quote taken for this very request and, when
/// everything passes, mint an execution token for the workload.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = TokenRequest,
    responses((status = 200, description = "An execution token for the workload", body = TokenResponse), super::openapi::ApiErrors)
)]
pub async fn token(
    State(st): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let cnf = request_fields(&req.workload_digest, req.cnf.as_deref())?;
    let binding = TokenRequestBinding {
        host_id: &req.host_id,
        workload: &req.workload,
        workload_digest: &req.workload_digest,
        cnf_key: req.cnf.as_deref(),
    };
    let expected = binding.quote_nonce(&req.nonce);
    let outcome = appraisal::tpm(
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

/// The answer to a token request that was granted.
pub(super) fn token_response(o: appraisal::Outcome) -> Result<Json<TokenResponse>, ApiError> {
    match o.token {
        Some(m) => Ok(Json(TokenResponse {
            token: m.token,
            cti: m.record.cti,
            expires_at: m.record.exp,
            appraisal: o.response,
        })),
        None => Err(ApiError::internal(
            "token_mint_failed",
            "a granted token was not minted",
        )),
    }
}

/// The fields every token request shares: a 32-byte workload digest and,
/// when given, the workload's `cnf` COSE_Key (parsed).
pub(super) fn request_fields(
    workload_digest: &[u8],
    cnf: Option<&[u8]>,
) -> Result<Option<VerifyingKey>, ApiError> {
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
