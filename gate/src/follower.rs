//! [`StatusFollower`]: keeps a gate's Token Status Lists current by polling
//! `/v1/status` (the current epoch, ETag / 304) and every other held list
//! (`/v1/status/lists/{epoch}`), and, optionally, following the
//! `/v1/status/stream` server-sent events (one per live list). Only a verified list moves the
//! gate's freshness (its signed `issued_at` / `expires_at`); a `304` or a
//! keep-alive is unauthenticated and refreshes nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use verifier_lib::api::governance::StatusEvent;
use verifier_lib::status::{self, ListCheck};

use crate::state::GateState;

/// How the follower learns about new status lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowMode {
    /// `GET /v1/status` every interval (ETag / 304).
    Poll,
    /// `/v1/status/stream` pushes, plus the periodic poll.
    Stream,
}

/// Keeps a [`GateState`]'s status list current.
#[derive(Debug, Clone)]
pub struct StatusFollower {
    pub broker: String,
    pub mode: FollowMode,
    pub poll_interval: Duration,
    pub leeway_secs: i64,
}

impl StatusFollower {
    /// Run forever (spawn it); errors are logged and retried.
    pub async fn run(self, gate: Arc<GateState>) {
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "status follower: no HTTP client");
                return;
            }
        };
        let _stream = (self.mode == FollowMode::Stream).then(|| {
            let stream = self.clone();
            let g = Arc::clone(&gate);
            let h = http.clone();
            AbortOnDrop(tokio::spawn(
                async move { stream.follow_stream(&h, &g).await },
            ))
        });
        let mut etag: Option<String> = None;
        loop {
            if let Err(e) = self.poll_once(&http, &gate, &mut etag).await {
                tracing::warn!(error = %e, "status poll failed");
            }
            if let Err(e) = self.poll_held(&http, &gate).await {
                tracing::warn!(error = %e, "status poll of held lists failed");
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    fn verify_and_install(&self, gate: &GateState, bytes: &[u8]) -> Result<(), String> {
        let v = &gate.config().verifier;
        let list = status::verify(bytes, v.keys(), ListCheck::at(gate.now(), self.leeway_secs))
            .map_err(|e| e.to_string())?;
        gate.install(list);
        Ok(())
    }

    /// The path of a list URI on this follower's broker: every broker of a
    /// fleet serves every list, under the same path.
    fn list_path(uri: &str) -> Option<&str> {
        uri.find("/v1/status/lists/").and_then(|i| uri.get(i..))
    }

    /// Refresh every held list by its own path; forget an expired one the
    /// broker no longer serves (retired: its tokens all expired).
    async fn poll_held(&self, http: &reqwest::Client, gate: &GateState) -> Result<(), String> {
        for uri in gate.held_uris() {
            let Some(path) = Self::list_path(&uri) else {
                continue;
            };
            let resp = http
                .get(format!("{}{path}", self.broker))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status() == StatusCode::NOT_FOUND {
                // Retired (or not served under this path): forgotten once
                // its own signed lifetime is over.
                if gate
                    .held(&uri)
                    .is_some_and(|held| gate.now() >= held.expires_at)
                {
                    gate.retire(&uri);
                }
                continue;
            }
            if !resp.status().is_success() {
                return Err(format!("HTTP {} for {path}", resp.status()));
            }
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            self.verify_and_install(gate, &bytes)?;
        }
        Ok(())
    }

    /// One conditional GET of `/v1/status`.
    pub async fn poll_once(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        etag: &mut Option<String>,
    ) -> Result<(), String> {
        let mut req = http
            .get(format!("{}/v1/status", self.broker))
            .timeout(Duration::from_secs(10));
        if let Some(t) = etag.as_deref() {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            // Unauthenticated: it refreshes nothing. The held list stays as
            // fresh as its signed issued_at / expires_at say.
            return Ok(());
        }
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let new_etag = resp
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        self.verify_and_install(gate, &bytes)?;
        *etag = new_etag;
        Ok(())
    }

    /// Fetch and install the list at `path` on the broker.
    async fn fetch_path(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        path: &str,
    ) -> Result<(), String> {
        if !path.starts_with("/v1/status") {
            return Err(format!("status event names an unexpected path {path:?}"));
        }
        let resp = http
            .get(format!("{}{path}", self.broker))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {} for {path}", resp.status()));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        self.verify_and_install(gate, &bytes)
    }

    async fn follow_stream(&self, http: &reqwest::Client, gate: &GateState) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.stream_once(http, gate).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => tracing::warn!(error = %e, "status stream interrupted"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn stream_once(&self, http: &reqwest::Client, gate: &GateState) -> Result<(), String> {
        let mut resp = http
            .get(format!("{}/v1/status/stream", self.broker))
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            buf.extend_from_slice(&chunk);
            if buf.len() > 8 * 1024 * 1024 {
                return Err("stream event too large".into());
            }
            while let Some(end) = find_event_end(&buf) {
                let raw: Vec<u8> = buf.drain(..end).collect();
                self.handle_event(http, gate, &raw).await;
            }
        }
        Ok(())
    }

    async fn handle_event(&self, http: &reqwest::Client, gate: &GateState, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let mut kind = "message";
        let mut data = String::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                kind = if v.trim() == "status" {
                    "status"
                } else {
                    "other"
                };
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        // Keep-alive comments and other events are unauthenticated: they
        // confirm nothing about the held list.
        if kind != "status" {
            return;
        }
        let Ok(ev) = serde_json::from_str::<StatusEvent>(&data) else {
            tracing::warn!("unreadable status event");
            return;
        };
        // Nothing newer than the held list of that URI (same version, not
        // signed later).
        if gate
            .held(&ev.uri)
            .is_some_and(|held| held.version == ev.version && ev.issued_at <= held.issued_at)
        {
            return;
        }
        let result = match &ev.list {
            Some(bytes) => self.verify_and_install(gate, bytes),
            None => self.fetch_path(http, gate, &ev.url).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "status event list rejected");
        }
    }
}

/// Stops the stream task when the follower itself is dropped or aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// End (exclusive, including the blank line) of the first complete SSE event.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::find_event_end;

    #[test]
    fn event_ends_at_the_first_blank_line_of_either_style() {
        assert_eq!(find_event_end(b"event: status\ndata: {}\n"), None);
        assert_eq!(find_event_end(b"event: status\ndata: {}\n\nrest"), Some(24));
        assert_eq!(find_event_end(b"data: 1\r\n\r\ndata: 2\n\n"), Some(11));
        assert_eq!(find_event_end(b"data: 1\n\ndata: 2\r\n\r\n"), Some(9));
        assert_eq!(find_event_end(b":keep-alive\n\n"), Some(13));
        assert_eq!(find_event_end(b""), None);
    }
}
