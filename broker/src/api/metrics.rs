//! `GET /metrics`: the broker's Prometheus metrics (text exposition
//! format), for operators only (bearer token, like the other operator
//! endpoints). Nothing secret is exported: counts, latencies, versions.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format (version 0.0.4)", body = String, content_type = "text/plain"),
        super::openapi::ApiErrors,
    ),
    security(("operator" = []))
)]
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let body = st.metrics.render(&st).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
