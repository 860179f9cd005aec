//! Operator views of hosts.

use axum::extract::{Path, State};
use axum::Json;
use verifier_lib::api::HostView;

use super::ApiError;
use crate::state::AppState;
use crate::store::HostRecord;

pub(crate) fn view(h: &HostRecord) -> HostView {
    HostView {
        id: h.id.clone(),
        status: h.status.as_str().to_owned(),
        enrolled_at: h.enrolled_at,
        last_attested_at: h.last_attested_at,
        last_failure: h
            .last_failure
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok()),
        policy_id: h.policy_id.clone(),
        ak_name: hex::encode(&h.ak_name),
    }
}

/// `GET /v1/hosts`.
#[utoipa::path(
    get,
    path = "/v1/hosts",
    tag = "operator",
    responses((status = 200, description = "Every host", body = Vec<HostView>), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<HostView>>, ApiError> {
    Ok(Json(st.store.hosts().await?.iter().map(view).collect()))
}

/// `GET /v1/hosts/{id}`.
#[utoipa::path(
    get,
    path = "/v1/hosts/{id}",
    tag = "operator",
    params(("id" = String, Path, description = "Host id")),
    responses((status = 200, description = "One host", body = HostView), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn show(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    match st.store.host(&id).await? {
        Some(h) => Ok(Json(view(&h))),
        None => Err(ApiError::not_found("unknown_host", format!("no host {id}"))),
    }
}
