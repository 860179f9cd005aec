//! `POST /v1/tokens/derive`: a narrower child of a presented, key-bound,
//! unrevoked parent token, proven by a proof of possession of the parent's
//! `cnf` key (`crate::decision::derive`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verifier_lib::api::governance::{DeriveRequest, DeriveResponse, AUTH_SCHEME, POP_HEADER};
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::RequestContext;

use super::ApiError;
use crate::decision::derive::{self, DeriveError};
use crate::mint;
use crate::state::AppState;

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The token of an `Authorization: Writ <b64url>` header.
pub(crate) fn presented_token(headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("token_missing", "Authorization: Writ <token> required"))?;
    let b64 = value
        .strip_prefix(AUTH_SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| unauthorized("token_missing", "Authorization scheme must be Writ"))?;
    URL_SAFE_NO_PAD
        .decode(b64.trim())
        .map_err(|_| unauthorized("token_malformed", "token is not base64url"))
}

fn presented_proof(headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
    let v = headers
        .get(POP_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("pop_missing", "Writ-PoP header required"))?;
    URL_SAFE_NO_PAD
        .decode(v.trim())
        .map_err(|_| unauthorized("pop_malformed", "Writ-PoP is not base64url"))
}

impl From<DeriveError> for ApiError {
    fn from(e: DeriveError) -> Self {
        match e {
            DeriveError::ParentInvalid(_) => unauthorized("token_invalid", e.to_string()),
            DeriveError::Proof(p) => unauthorized(p.code(), p.to_string()),
            DeriveError::ParentUnknown => ApiError::forbidden("parent_unknown", e.to_string()),
            DeriveError::ParentRevoked => ApiError::forbidden("parent_revoked", e.to_string()),
            DeriveError::ParentExpired => ApiError::forbidden("parent_expired", e.to_string()),
            DeriveError::Lineage(l) => ApiError::forbidden(l.code(), l.to_string()),
            DeriveError::Decision(d) => d.into(),
        }
    }
}

/// `POST /v1/tokens/derive`: a narrower child of a presented, key-bound,
/// unrevoked parent token, proven by a PoP with the parent's `cnf` key.
#[utoipa::path(
    post,
    path = "/v1/tokens/derive",
    tag = "tokens",
    request_body = DeriveRequest,
    responses((status = 200, description = "A narrower child token (parent in `Authorization: Writ`, proof in `Writ-PoP`)", body = DeriveResponse), super::openapi::ApiErrors)
)]
pub async fn derive(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DeriveResponse>, ApiError> {
    let parent = presented_token(&headers)?;
    let proof = presented_proof(&headers)?;
    let req: DeriveRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    let cnf = mint::parse_cnf(&req.cnf)
        .map_err(|e| ApiError::bad_request("invalid_cnf", format!("cnf: {e}")))?;
    let body_digest = HashAlg::Sha256.digest(&body);
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let derived = derive::derive(
        &st,
        derive::DeriveRequest {
            parent: &parent,
            proof: &proof,
            context: RequestContext {
                method: "POST",
                path,
                body_digest: &body_digest,
                challenge: None,
            },
            cnf,
            aud: req.aud.as_deref(),
            scope: &req.scope,
            lifetime_secs: req.lifetime_secs,
        },
    )
    .await?;
    st.metrics.token_minted("derived");
    Ok(Json(DeriveResponse {
        token: derived.minted.token,
        cti: derived.minted.record.cti,
        expires_at: derived.minted.record.exp,
        depth: derived.depth,
    }))
}
