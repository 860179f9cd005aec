//! Key discovery: the broker's token verification keys — the signing key
//! and, for `keys.overlap_secs` after a rotation, the previous one.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiError;
use crate::state::AppState;

/// `GET /v1/keys`: COSE_KeySet (`application/cose-key-set`).
pub async fn cose_key_set(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let bytes = st
        .key_set_at(st.now())
        .to_cose_key_set()
        .map_err(|e| ApiError::internal("key_encoding", e))?;
    Ok(([(header::CONTENT_TYPE, "application/cose-key-set")], bytes))
}

/// `GET /v1/keys/jwks`: the same keys as a JSON Web Key Set.
pub async fn jwks(State(st): State<AppState>) -> impl IntoResponse {
    axum::Json(st.key_set_at(st.now()).to_jwks_json())
}
