//! The `/v1` HTTP API. [`app`] builds the router so handlers can be tested
//! without sockets.

mod attest;
pub mod audit;
mod derive;
mod enroll;
pub mod error;
mod hosts;
pub mod json;
mod keys;
pub mod limits;
mod operator;
mod policy_learn;
mod policy_shadow;
pub mod request_key;
mod revoke;
mod snp;
mod source;
mod status;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;

use crate::state::AppState;

pub use error::ApiError;

/// The broker's router. Operator endpoints sit behind
/// [`operator::require`]; the rest is for hosts, workloads and
/// relying parties (the audit log and status list are public by design).
pub fn app(state: AppState) -> Router {
    let limit = state.config.server.body_limit_bytes;
    let operator = Router::new()
        .route("/v1/policy/learn", post(policy_learn::learn))
        .route("/v1/policy/shadow/report", get(policy_shadow::report))
        .route("/v1/hosts", get(hosts::list))
        .route("/v1/hosts/{id}", get(hosts::show))
        .route("/v1/hosts/{id}/revoke", post(revoke::revoke_host))
        .route("/v1/hosts/{id}/reinstate", post(revoke::reinstate_host))
        .route("/v1/hosts/{id}/events", get(revoke::host_events))
        .route("/v1/tokens/{cti}/revoke", post(revoke::revoke_token))
        .route("/v1/workloads/{name}/revoke", post(revoke::revoke_workload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            operator::require,
        ));
    // One bucket per source over every endpoint that writes or costs.
    let limiter = std::sync::Arc::new(limits::SourceLimiter::new(&state.config.limits));
    let costly = Router::new()
        .route("/v1/enroll/start", post(enroll::start))
        .route("/v1/enroll/finish", post(enroll::finish))
        .route("/v1/challenge", post(attest::challenge))
        .route("/v1/attest", post(attest::attest))
        .route("/v1/tokens", post(attest::token))
        .route("/v1/snp/challenge", post(snp::challenge))
        .route("/v1/snp/attest", post(snp::attest))
        .route("/v1/snp/tokens", post(snp::token))
        .route("/v1/tokens/derive", post(derive::derive))
        .route("/v1/tokens/signed", post(request_key::token))
        .route("/v1/request-keys", post(request_key::register))
        .route_layer(axum::middleware::from_fn_with_state(
            limiter,
            limits::rate_limit,
        ));
    let timeout = Duration::from_secs(state.config.limits.request_timeout_secs);
    let slots = limits::StreamSlots::new(state.config.limits.max_status_streams);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/keys", get(keys::cose_key_set))
        .route("/v1/keys/jwks", get(keys::jwks))
        .route("/v1/keys/endorsements", get(keys::endorsements))
        .route("/v1/audit/key", get(audit::key))
        .route("/v1/audit/keys", get(audit::keys))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/v1/audit/entries", get(audit::entries))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route("/v1/status", get(status::status))
        .merge(costly)
        .merge(operator)
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        // Every route above gets the whole-request timeout; the stream
        // below is bounded by its slots and `status.stream_max_secs`.
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            limits::request_timeout,
        ))
        .route(
            "/v1/status/stream",
            get(status::status_stream).layer(Extension(slots)),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
