//! Per-request telemetry, one middleware over the whole router: a request
//! id (the client's `x-request-id` when it is short and plain, else a fresh
//! one), echoed in the response and carried by the request's tracing span
//! (so every log line of the request names it); one log line per request;
//! the latency histogram by matched route template; error codes.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::state::AppState;

/// The request id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Routes whose successful requests are logged at debug level.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Longest client-chosen request id kept.
const MAX_REQUEST_ID: usize = 64;

/// The stable error code of an error answer, set by `ApiError` for this
/// middleware (the body is not parsed again).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The client's request id if it is 1..=64 characters of `[A-Za-z0-9._-]`
/// (anything else could forge log lines or carry data), else `None`.
pub fn client_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let plain = !s.is_empty()
        && s.len() <= MAX_REQUEST_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    plain.then(|| s.to_owned())
}

/// A fresh request id: 16 random bytes, hex.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG does not fail in practice; a zero id still works as a
    // (non-unique) label.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn track(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(client_request_id)
        .unwrap_or_else(new_request_id);
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    st.metrics.request(&route, &method, status, seconds);
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if let Some(code) = code {
        st.metrics.api_error(code);
    }
    let duration_ms = seconds * 1000.0;
    let error_code = code.unwrap_or("");
    span.in_scope(|| {
        // Probes and scrapes come every few seconds: debug, unless refused.
        if PROBES.contains(&route.as_str()) && status < 400 {
            tracing::debug!(status, duration_ms, error_code, "request");
        } else {
            tracing::info!(status, duration_ms, error_code, "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}
