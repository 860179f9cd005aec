//! `GET /v1/policy/shadow/report` (operators): which hosts the shadow
//! candidate decides differently, the newest difference per host (see
//! `crate::decision::shadow`). `?limit=N` bounds the rows read (default
//! 1000, at most 1000).

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use super::ApiError;
use crate::decision::shadow::{report as build, ShadowReport};
use crate::state::AppState;
use crate::store::policy::MAX_POLICY_ROWS;

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    limit: Option<u32>,
}

/// `GET /v1/policy/shadow/report`.
#[utoipa::path(
    get,
    path = "/v1/policy/shadow/report",
    tag = "operator",
    params(("limit" = Option<u32>, Query, description = "The most difference rows read, newest first (default and maximum 1000)")),
    responses((status = 200, description = "Hosts the shadow candidate decides differently, the newest difference per host", content_type = "application/json"), super::openapi::ApiErrors),
    security(("operator" = []))
)]
pub async fn report(
    State(st): State<AppState>,
    Query(q): Query<ReportQuery>,
) -> Result<Json<ShadowReport>, ApiError> {
    Ok(Json(
        build(&st.store, q.limit.unwrap_or(MAX_POLICY_ROWS)).await?,
    ))
}
