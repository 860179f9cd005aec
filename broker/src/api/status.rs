//! `/v1/status`, `/v1/status/lists/{epoch}` and `/v1/status/stream`: the
//! Token Status Lists (draft-ietf-oauth-status-list, CWT), with ETag /
//! If-None-Match, and Server-Sent Events on every new version.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{Stream, StreamExt};
use verifier_lib::api::governance::{StatusEvent, STATUS_MEDIA_TYPE};

use super::limits::{StreamCapacity, StreamSlots};
use super::ApiError;
use crate::governance::{PublishError, Published};
use crate::state::AppState;

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Store(e) => ApiError::internal("storage_error", e),
            e => ApiError::internal("status_sign_failed", e),
        }
    }
}

async fn current(st: &AppState) -> Result<std::sync::Arc<Published>, ApiError> {
    Ok(st
        .governance
        .current(&st.store, &st.signing_key, &st.config, st.now())
        .await?)
}

/// `GET /v1/status`: the current epoch's signed list, with ETag /
/// If-None-Match.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "status",
    responses((status = 200, description = "The signed status list (ETag / If-None-Match)", content_type = "application/statuslist+cwt"), (status = 304, description = "Not modified"), super::openapi::ApiErrors)
)]
pub async fn status(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = current(&st).await?;
    respond(&p, &headers)
}

/// `GET /v1/status/lists/{epoch}`: a live epoch's signed list (the URI
/// tokens carry); `404 status_list_unknown` for an epoch never opened or
/// retired; `400 status_epoch_invalid` for an epoch that is not a number.
#[utoipa::path(
    get,
    path = "/v1/status/lists/{epoch}",
    tag = "status",
    params(("epoch" = u64, Path, description = "The list's epoch, as in the `uri` of a token's status claim")),
    responses((status = 200, description = "The epoch's signed status list (ETag / If-None-Match)", content_type = "application/statuslist+cwt"), (status = 304, description = "Not modified"), super::openapi::ApiErrors)
)]
pub async fn status_list(
    State(st): State<AppState>,
    Path(epoch): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let epoch: u64 = epoch.parse().map_err(|_| {
        ApiError::bad_request(
            "status_epoch_invalid",
            "the status list epoch is not an unsigned integer",
        )
    })?;
    let p = st
        .governance
        .published_live(&st.store, &st.signing_key, &st.config, epoch, st.now())
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "status_list_unknown",
                format!("no live status list for epoch {epoch}"),
            )
        })?;
    respond(&p, &headers)
}

fn respond(p: &Published, headers: &HeaderMap) -> Result<Response, ApiError> {
    let etag = HeaderValue::from_str(&p.etag).map_err(|e| ApiError::internal("status_etag", e))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == p.etag || t.trim() == "*"));
    let version = HeaderValue::from(p.version);
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (
                    header::HeaderName::from_static("writ-status-version"),
                    version,
                ),
            ],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(STATUS_MEDIA_TYPE),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("writ-status-version"),
                version,
            ),
        ],
        p.bytes.as_ref().clone(),
    )
        .into_response())
}

fn status_event(p: &Published, inline_max: usize) -> Event {
    let ev = StatusEvent {
        version: p.version,
        issued_at: p.issued_at,
        expires_at: p.expires_at,
        entries: p.entries,
        uri: p.uri.clone(),
        url: format!("/v1/status/lists/{}", p.epoch),
        etag: p.etag.clone(),
        list: (p.bytes.len() <= inline_max).then(|| p.bytes.as_ref().clone()),
    };
    let data = serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into());
    Event::default()
        .event("status")
        .id(format!("{}-{}", p.epoch, p.version))
        .data(data)
}

/// `GET /v1/status/stream`: Server-Sent Events, one `status` event per live
/// list now and again on every new status version (and re-signing).
/// At most `limits.max_status_streams` at once (`503 stream_capacity`
/// beyond), each closed after `status.stream_max_secs`.
#[utoipa::path(
    get,
    path = "/v1/status/stream",
    tag = "status",
    responses((status = 200, description = "Server-Sent Events: one `status` event per status-list version", content_type = "text/event-stream"), super::openapi::ApiErrors)
)]
pub async fn status_stream(
    State(st): State<AppState>,
    Extension(slots): Extension<StreamSlots>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StreamCapacity> {
    // Held by the stream: the slot is free again when the stream ends or
    // the client goes away.
    let slot = slots.acquire()?;
    let rx = st.governance.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(st.config.status.stream_max_secs);
    let stream = futures_util::stream::unfold(
        (st, rx, true, slot),
        move |(st, mut rx, first, slot)| async move {
            if !first {
                // A new version, or the re-signing interval: either way the
                // subscriber gets the current list with a fresh signed iat.
                let resign =
                    Duration::from_secs(st.config.status.resign_secs.max(1).unsigned_abs());
                let wake = std::cmp::min(deadline, tokio::time::Instant::now() + resign);
                match tokio::time::timeout_at(wake, rx.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return None,
                    Err(_) if tokio::time::Instant::now() >= deadline => return None,
                    Err(_) => {}
                }
            }
            let live = st
                .governance
                .live(&st.store, &st.signing_key, &st.config, st.now())
                .await;
            let events: Vec<Event> = match live {
                Ok(lists) => lists
                    .iter()
                    .map(|p| status_event(p, st.config.status.inline_max_bytes))
                    .collect(),
                Err(e) => vec![Event::default().event("error").data(ApiError::from(e).code)],
            };
            Some((events, (st, rx, false, slot)))
        },
    )
    .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
