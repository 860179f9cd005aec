//! Operator endpoints that change state: revoking and reinstating hosts,
//! revoking tokens and workloads (`crate::decision::operator`), and a host's
//! event history.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verifier_lib::api::governance::{HostStateResponse, RevocationResponse, RevokeRequest};
use verifier_lib::token;

use super::ApiError;
use crate::config::Operator;
use crate::decision::operator::{self as decide, Revoked};
use crate::state::AppState;
use crate::store::{HostEvents, MAX_HOST_EVENTS};

fn reason_from(body: &Bytes, default: &str) -> Result<String, ApiError> {
    if body.is_empty() {
        return Ok(default.to_owned());
    }
    let req: RevokeRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    Ok(req.reason.unwrap_or_else(|| default.to_owned()))
}

fn response(r: Revoked) -> RevocationResponse {
    RevocationResponse {
        revoked_tokens: r.tokens,
        status_version: r.status_version,
    }
}

/// `POST /v1/hosts/{id}/revoke`: status `revoked`, every token of the host
/// (and their descendants) revoked, one audited decision.
#[utoipa::path(
    post,
    path = "/v1/hosts/{id}/revoke",
    tag = "operator",
    request_body = Option<verifier_lib::api::governance::RevokeRequest>,
    params(("id" = String, Path, description = "Host id")),
    responses((status = 200, description = "The host is revoked with all its tokens", body = HostStateResponse), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn revoke_host(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<HostStateResponse>, ApiError> {
    let reason = reason_from(&body, "revoked by operator")?;
    let r = decide::revoke_host(&st, &op, &id, &reason).await?;
    Ok(Json(HostStateResponse {
        host_id: id,
        status: "revoked".into(),
        revocation: Some(response(r)),
    }))
}

/// `POST /v1/hosts/{id}/reinstate`: revoked → enrolled (it must attest again).
#[utoipa::path(
    post,
    path = "/v1/hosts/{id}/reinstate",
    tag = "operator",
    params(("id" = String, Path, description = "Host id")),
    responses((status = 200, description = "The host is enrolled again and must attest", body = HostStateResponse), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn reinstate_host(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
) -> Result<Json<HostStateResponse>, ApiError> {
    decide::reinstate_host(&st, &op, &id).await?;
    Ok(Json(HostStateResponse {
        host_id: id,
        status: "enrolled".into(),
        revocation: None,
    }))
}

/// `GET /v1/hosts/{id}/events`: reboots, clock refusals, state changes
/// (the newest 1000, oldest first).
#[utoipa::path(
    get,
    path = "/v1/hosts/{id}/events",
    tag = "operator",
    params(("id" = String, Path, description = "Host id")),
    responses((status = 200, description = "Reboots, clock refusals and status changes of the host, the newest 1000, oldest first (JSON array)", content_type = "application/json"), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn host_events(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::store::HostEvent>>, ApiError> {
    if st.store.host(&id).await?.is_none() {
        return Err(ApiError::not_found("unknown_host", format!("no host {id}")));
    }
    Ok(Json(
        st.store
            .host_events(&id, HostEvents::All, MAX_HOST_EVENTS)
            .await?,
    ))
}

/// A token id given as 32 hex digits or 22 base64url characters.
pub(super) fn parse_cti(s: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = hex::decode(s)
        .ok()
        .or_else(|| URL_SAFE_NO_PAD.decode(s).ok())
        .filter(|b| b.len() == token::CTI_LEN);
    bytes.ok_or_else(|| {
        ApiError::bad_request("invalid_cti", "cti: expected 16 bytes as hex or base64url")
    })
}

/// `POST /v1/tokens/{cti}/revoke`: the token and all its descendants.
#[utoipa::path(
    post,
    path = "/v1/tokens/{cti}/revoke",
    tag = "operator",
    request_body = Option<verifier_lib::api::governance::RevokeRequest>,
    params(("cti" = String, Path, description = "Token id: 16 bytes as hex or base64url")),
    responses((status = 200, description = "The token and its descendants are revoked", body = RevocationResponse), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn revoke_token(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(cti): Path<String>,
    body: Bytes,
) -> Result<Json<RevocationResponse>, ApiError> {
    let id = parse_cti(&cti)?;
    let reason = reason_from(&body, "revoked by operator")?;
    let r = decide::revoke_token(&st, &op, &id, &reason).await?;
    Ok(Json(response(r)))
}

/// `POST /v1/workloads/{name}/revoke`: every token of the workload.
#[utoipa::path(
    post,
    path = "/v1/workloads/{name}/revoke",
    tag = "operator",
    request_body = Option<verifier_lib::api::governance::RevokeRequest>,
    params(("name" = String, Path, description = "Workload name")),
    responses((status = 200, description = "Every token of the workload is revoked", body = RevocationResponse), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn revoke_workload(
    State(st): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<RevocationResponse>, ApiError> {
    let reason = reason_from(&body, "workload revoked by operator")?;
    let r = decide::revoke_workload(&st, &op, &name, &reason).await?;
    Ok(Json(response(r)))
}
