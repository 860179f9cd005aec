//! The `/v1` HTTP API. [`app`] builds the router so handlers can be tested
//! without sockets.

mod attest;
pub mod audit;
mod derive;
mod enroll;
pub mod error;
pub mod health;
mod hosts;
pub mod json;
mod keys;
pub mod limits;
mod metrics;
pub mod openapi;
mod operator;
mod policy_learn;
mod policy_shadow;
pub mod request_key;
mod revoke;
mod snp;
mod source;
mod status;
pub mod tokens;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Extension;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use error::ApiError;

/// The broker's router. Operator endpoints sit behind
/// [`operator::require`]; the rest is for hosts, workloads and
/// relying parties (the audit log and status list are public by design).
/// Every route is declared once, with `routes!`, from the handler's
/// `#[utoipa::path]`: the router and `/v1/openapi.json` cannot differ.
pub fn app(state: AppState) -> Router {
    let limit = state.config.server.body_limit_bytes;
    let (router, doc) = documented(&state).split_for_parts();
    router
        .layer(Extension(openapi::Rendered::of(&doc)))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::telemetry::http::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The routes and, built from the same declarations, their OpenAPI
/// document.
pub fn documented(state: &AppState) -> OpenApiRouter<AppState> {
    let operator = OpenApiRouter::new()
        .routes(routes!(policy_learn::learn))
        .routes(routes!(policy_shadow::report))
        .routes(routes!(hosts::list))
        .routes(routes!(hosts::show))
        .routes(routes!(revoke::revoke_host))
        .routes(routes!(revoke::reinstate_host))
        .routes(routes!(revoke::host_events))
        .routes(routes!(tokens::list))
        .routes(routes!(tokens::show))
        .routes(routes!(revoke::revoke_token))
        .routes(routes!(revoke::revoke_workload))
        .routes(routes!(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            operator::require,
        ));
    // One bucket per source over every endpoint that writes or costs, and
    // the dashboard.
    let limiter = std::sync::Arc::new(limits::SourceLimiter::new(&state.config.limits));
    let costly = OpenApiRouter::new()
        .routes(routes!(enroll::start))
        .routes(routes!(enroll::finish))
        .routes(routes!(attest::challenge))
        .routes(routes!(attest::attest))
        .routes(routes!(attest::token))
        .routes(routes!(snp::challenge))
        .routes(routes!(snp::attest))
        .routes(routes!(snp::token))
        .routes(routes!(derive::derive))
        .routes(routes!(request_key::token))
        .routes(routes!(request_key::register))
        // The dashboard (sign-in included) shares the per-source budget.
        .merge(OpenApiRouter::from(crate::ui::router()))
        .route_layer(axum::middleware::from_fn_with_state(
            limiter,
            limits::rate_limit,
        ));
    let timeout = Duration::from_secs(state.config.limits.request_timeout_secs);
    let slots = limits::StreamSlots::new(state.config.limits.max_status_streams);
    // The stream is bounded by its slots and `status.stream_max_secs`, not
    // by the whole-request timeout.
    let stream = OpenApiRouter::new()
        .routes(routes!(status::status_stream))
        .layer(Extension(slots));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::document))
        .routes(routes!(keys::cose_key_set))
        .routes(routes!(keys::jwks))
        .routes(routes!(keys::endorsements))
        .routes(routes!(audit::key))
        .routes(routes!(audit::keys))
        .routes(routes!(audit::checkpoint))
        .routes(routes!(audit::checkpoints))
        .routes(routes!(audit::entries))
        .routes(routes!(audit::inclusion))
        .routes(routes!(audit::consistency))
        .routes(routes!(status::status))
        .routes(routes!(status::status_list))
        .merge(costly)
        .merge(operator)
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        // Every route above gets the whole-request timeout.
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            limits::request_timeout,
        ))
        .merge(stream)
}
