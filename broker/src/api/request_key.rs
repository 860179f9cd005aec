//! `POST /v1/request-keys` and `POST /v1/tokens/signed`: request-signing
//! keys (see `crate::decision::request_key`). Thin: parse, decide, answer.

use axum::extract::State;
use axum::Json;
use verifier_lib::api::request_key::{
    RequestKeyRegistration, RequestKeyResponse, SignedTokenRequest,
};
use verifier_lib::api::{AppraisalResponse, TokenResponse};
use verifier_lib::decision::HostStatus;

use super::attest::request_fields;
use super::json::ApiJson;
use super::ApiError;
use crate::decision::request_key::{self, RequestKeyError, SignedError};
use crate::state::AppState;

impl From<SignedError> for ApiError {
    fn from(e: SignedError) -> Self {
        match e {
            SignedError::Decision(d) => d.into(),
            SignedError::Key(k) => {
                let code = match &k {
                    RequestKeyError::Rejected(_) => "request_key_rejected",
                    RequestKeyError::OtherBoot { .. } => "request_key_other_boot",
                    RequestKeyError::Unknown => "request_key_unknown",
                    RequestKeyError::BadSignature(_) => "request_signature_invalid",
                };
                ApiError::forbidden(code, k.to_string())
            }
        }
    }
}

/// `POST /v1/request-keys`: verify the AK's certification of the host's
/// request key (nonce from `/v1/challenge`) and register the key.
#[utoipa::path(
    post,
    path = "/v1/request-keys",
    operation_id = "register_request_key",
    tag = "tokens",
    request_body = RequestKeyRegistration,
    responses((status = 200, description = "The registered request key", body = RequestKeyResponse), super::openapi::ApiErrors)
)]
pub async fn register(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<RequestKeyRegistration>,
) -> Result<Json<RequestKeyResponse>, ApiError> {
    let record = request_key::register(
        &st,
        request_key::Registration {
            host_id: &req.host_id,
            nonce: &req.nonce,
            attest: &req.attest,
            signature: &req.signature,
            key_public: &req.key_public,
        },
    )
    .await?;
    Ok(Json(RequestKeyResponse {
        host_id: record.host_id,
        key_name: record.key_name,
        max_appraisal_age_secs: st.config.hosts.signed_request_max_age_secs,
    }))
}

/// `POST /v1/tokens/signed`: a token for a request signed by the host's
/// registered request key, with no quote, while the host is trusted and
/// freshly appraised.
#[utoipa::path(
    post,
    path = "/v1/tokens/signed",
    operation_id = "signed_token",
    tag = "tokens",
    request_body = SignedTokenRequest,
    responses((status = 200, description = "An execution token for a request signed by the request key", body = TokenResponse), super::openapi::ApiErrors)
)]
pub async fn token(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SignedTokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let cnf = request_fields(&req.workload_digest, req.cnf.as_deref())?;
    let signed = request_key::token(
        &st,
        request_key::SignedRequest {
            host_id: &req.host_id,
            nonce: &req.nonce,
            workload: &req.workload,
            workload_digest: &req.workload_digest,
            cnf: req.cnf.as_deref().zip(cnf),
            key_name: &req.key_name,
            signature: &req.signature,
        },
    )
    .await?;
    let policy = st.policy.current();
    st.metrics.token_minted("signed");
    Ok(Json(TokenResponse {
        cti: signed.minted.record.cti,
        expires_at: signed.minted.record.exp,
        token: signed.minted.token,
        appraisal: AppraisalResponse {
            host_id: req.host_id,
            verdict: "affirming".into(),
            host_status: HostStatus::Trusted.as_str().to_owned(),
            policy_id: policy.id.clone(),
            policy_hash: policy.hash_hex(),
            appraised_at: signed.appraised_at,
            failures: Vec::new(),
        },
    }))
}
