//! `POST /v1/policy/learn`: draft a policy from a golden host's logs. The
//! draft is returned as TOML text for an operator to review; nothing is
//! activated.

use axum::http::header;
use axum::response::IntoResponse;
use verifier_lib::api::PolicyLearnRequest;
use verifier_lib::policy::learn::{learn as draft, LearnInput};

use super::json::ApiJson;
use super::ApiError;

#[utoipa::path(
    post,
    path = "/v1/policy/learn",
    tag = "operator",
    request_body = PolicyLearnRequest,
    responses((status = 200, description = "A draft policy (TOML) for review; nothing is activated", body = String, content_type = "application/toml"), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn learn(
    ApiJson(req): ApiJson<PolicyLearnRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let input = LearnInput {
        id: req.id.as_deref().unwrap_or("learned"),
        group: req.group.as_deref().unwrap_or("learned"),
        hosts: req.hosts.clone(),
        eventlog: req.eventlog.as_deref(),
        ima: req.ima.as_deref(),
    };
    let text = draft(&input).map_err(|e| {
        ApiError::bad_request("learn_failed", format!("cannot draft a policy: {e}"))
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        text,
    ))
}
