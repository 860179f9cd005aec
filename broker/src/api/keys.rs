//! Key discovery: the broker's token verification keys — the signing key
//! and, for `keys.overlap_secs` after a rotation, the previous one.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiError;
use crate::state::AppState;

/// `GET /v1/keys`: COSE_KeySet (`application/cose-key-set`).
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    responses((status = 200, description = "The token verification keys (COSE_KeySet)", content_type = "application/cose-key-set"), super::openapi::ApiErrors)
)]
pub async fn cose_key_set(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let bytes = st
        .key_set_at(st.now())
        .to_cose_key_set()
        .map_err(|e| ApiError::internal("key_encoding", e))?;
    Ok(([(header::CONTENT_TYPE, "application/cose-key-set")], bytes))
}

/// `GET /v1/keys/jwks`: the same keys as a JSON Web Key Set.
#[utoipa::path(
    get,
    path = "/v1/keys/jwks",
    tag = "keys",
    responses((status = 200, description = "The token verification keys (JWK Set)", content_type = "application/json"), super::openapi::ApiErrors)
)]
pub async fn jwks(State(st): State<AppState>) -> impl IntoResponse {
    axum::Json(st.key_set_at(st.now()).to_jwks_json())
}

/// `GET /v1/keys/endorsements`: every token-key rotation's endorsement (the
/// old key signing the new one), a CBOR array of COSE_Sign1 byte strings
/// (`application/cbor`). A holder of an older pinned key follows it to the
/// current key set; see `verifier_lib::token::endorsement`.
#[utoipa::path(
    get,
    path = "/v1/keys/endorsements",
    tag = "keys",
    responses((status = 200, description = "Token-key rotation endorsements (CBOR array of COSE_Sign1)", content_type = "application/cbor"), super::openapi::ApiErrors)
)]
pub async fn endorsements(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/cbor")],
        st.key_endorsements.as_ref().clone(),
    )
}
