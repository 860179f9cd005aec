//! [`StatusFollower`]: keeps a gate's Token Status Lists current by polling
//! `/v1/status` (the current epoch, ETag / 304) and every other held list
//! (`/v1/status/lists/{epoch}`), and, optionally, following the
//! `/v1/status/stream` server-sent events (one per live list). Only a
//! verified list moves the
//! gate's freshness (its signed `issued_at` / `expires_at`); a `304` or a
//! keep-alive is unauthenticated and refreshes nothing.
//!
//! The follower knows every broker of a fleet: the poll and the stream each
//! stay with the broker that answered last and move to the next one on a
//! connection failure, a timeout or a 5xx. Any broker's list is acceptable
//! (each is signed with the fleet's token key and verified here), and
//! [`GateState::install`] keeps only a list newer than the held one, so
//! switching to a broker that serves an older list never goes back.

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
    /// Base URLs of the fleet's brokers, tried in order (at least one).
    pub brokers: Vec<String>,
    pub mode: FollowMode,
    pub poll_interval: Duration,
    pub leeway_secs: i64,
}

/// Why one fetch from one broker failed.
#[derive(Debug)]
enum FetchError {
    /// The broker failed (connection, timeout, 5xx): try the next one.
    Broker(String),
    /// The broker answered, but not with an acceptable list.
    Answer(String),
}

impl FetchError {
    fn transport(e: reqwest::Error) -> Self {
        FetchError::Broker(e.to_string())
    }

    fn status(code: StatusCode) -> Self {
        if code.is_server_error() {
            FetchError::Broker(format!("HTTP {code}"))
        } else {
            FetchError::Answer(format!("HTTP {code}"))
        }
    }
}

/// What a poll of one broker got.
#[derive(Debug)]
enum Polled {
    /// `304`: nothing new (and nothing confirmed).
    NotModified,
    /// A verified list, handed to the gate; its ETag.
    Installed { etag: Option<String> },
}

/// Which broker the poll uses, and the ETag of its last list.
#[derive(Debug, Default)]
struct PollCursor {
    broker: usize,
    etag: Option<String>,
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
        let mut cursor = PollCursor::default();
        loop {
            if let Err(e) = self.poll_from(&http, &gate, &mut cursor).await {
                tracing::warn!(error = %e, "status poll failed");
            }
            if let Err(e) = self.poll_held(&http, &gate, cursor.broker).await {
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

    /// The path of a list URI on any broker: every broker of a fleet serves
    /// every list, under the same path.
    fn list_path(uri: &str) -> Option<&str> {
        uri.find("/v1/status/lists/").and_then(|i| uri.get(i..))
    }

    /// GET `path` from the brokers, starting at `start` and moving on past
    /// brokers that fail (connection, timeout, 5xx): the answer and the
    /// index of the broker that gave it.
    async fn get_from(
        &self,
        http: &reqwest::Client,
        start: usize,
        path: &str,
    ) -> Result<(usize, reqwest::Response), String> {
        let n = self.brokers.len();
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let Some(url) = self.brokers.get(i) else {
                continue;
            };
            match http
                .get(format!("{url}{path}"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(resp) if !resp.status().is_server_error() => return Ok((i, resp)),
                Ok(resp) => failures.push(format!("{url}: HTTP {}", resp.status())),
                Err(e) => failures.push(format!("{url}: {e}")),
            }
        }
        Err(format!(
            "every broker failed for {path}: {}",
            failures.join("; ")
        ))
    }

    /// Refresh every held list by its own path; forget an expired one the
    /// brokers no longer serve (retired: its tokens all expired).
    async fn poll_held(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        start: usize,
    ) -> Result<(), String> {
        for uri in gate.held_uris() {
            let Some(path) = Self::list_path(&uri) else {
                continue;
            };
            let (_, resp) = self.get_from(http, start, path).await?;
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

    /// Fetch and install the list at `path`, from the broker `start` or
    /// the next ones should it fail.
    async fn fetch_path(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        start: usize,
        path: &str,
    ) -> Result<(), String> {
        if !path.starts_with("/v1/status") {
            return Err(format!("status event names an unexpected path {path:?}"));
        }
        let (_, resp) = self.get_from(http, start, path).await?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {} for {path}", resp.status()));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        self.verify_and_install(gate, &bytes)
    }

    /// One conditional GET of `/v1/status`, from the first broker that
    /// answers (in list order). `etag` is the held list's ETag.
    pub async fn poll_once(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        etag: &mut Option<String>,
    ) -> Result<(), String> {
        let mut cursor = PollCursor {
            broker: 0,
            etag: etag.take(),
        };
        let result = self.poll_from(http, gate, &mut cursor).await;
        *etag = cursor.etag;
        result
    }

    /// One poll, starting at `cursor.broker` and moving on past brokers
    /// that fail; the cursor then names the broker that answered. An ETag
    /// is only sent to the broker that gave it.
    async fn poll_from(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        cursor: &mut PollCursor,
    ) -> Result<(), String> {
        let n = self.brokers.len();
        if n == 0 {
            return Err("no broker URL".into());
        }
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (cursor.broker + k) % n;
            let Some(url) = self.brokers.get(i) else {
                continue;
            };
            let etag = if i == cursor.broker {
                cursor.etag.as_deref()
            } else {
                None
            };
            match self.fetch_status(http, gate, url, etag).await {
                Ok(polled) => {
                    if i != cursor.broker {
                        cursor.broker = i;
                        cursor.etag = None;
                    }
                    if let Polled::Installed { etag } = polled {
                        cursor.etag = etag;
                    }
                    return Ok(());
                }
                Err(FetchError::Broker(e)) => {
                    tracing::warn!(broker = %url, error = %e, "status poll: broker failed, trying the next one");
                    failures.push(format!("{url}: {e}"));
                }
                Err(FetchError::Answer(e)) => {
                    if i != cursor.broker {
                        cursor.broker = i;
                        cursor.etag = None;
                    }
                    return Err(format!("{url}: {e}"));
                }
            }
        }
        Err(format!("every broker failed: {}", failures.join("; ")))
    }

    /// GET `/v1/status` from `broker`, conditional on `etag`.
    async fn fetch_status(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        broker: &str,
        etag: Option<&str>,
    ) -> Result<Polled, FetchError> {
        let mut req = http
            .get(format!("{broker}/v1/status"))
            .timeout(Duration::from_secs(10));
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        let resp = req.send().await.map_err(FetchError::transport)?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            // Unauthenticated: it refreshes nothing. The held list stays as
            // fresh as its signed issued_at / expires_at say.
            return Ok(Polled::NotModified);
        }
        if !resp.status().is_success() {
            return Err(FetchError::status(resp.status()));
        }
        let new_etag = resp
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(FetchError::transport)?;
        self.verify_and_install(gate, &bytes)
            .map_err(FetchError::Answer)?;
        Ok(Polled::Installed { etag: new_etag })
    }

    /// Follow one broker's stream after the other: a broker that fails is
    /// left for the next at once; after every broker failed in turn the
    /// follower backs off (200 ms doubling to 10 s).
    async fn follow_stream(&self, http: &reqwest::Client, gate: &GateState) {
        let n = self.brokers.len().max(1);
        let mut broker = 0;
        let mut failed_in_a_row = 0;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.stream_once(http, gate, broker).await {
                Ok(()) => {
                    failed_in_a_row = 0;
                    backoff = Duration::from_millis(200);
                }
                Err(FetchError::Broker(e)) => {
                    tracing::warn!(broker = ?self.brokers.get(broker), error = %e, "status stream: broker failed, trying the next one");
                    broker = (broker + 1) % n;
                    failed_in_a_row += 1;
                    if failed_in_a_row < n {
                        continue;
                    }
                    failed_in_a_row = 0;
                }
                Err(FetchError::Answer(e)) => {
                    tracing::warn!(error = %e, "status stream interrupted");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn stream_once(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        broker: usize,
    ) -> Result<(), FetchError> {
        let url = self
            .brokers
            .get(broker)
            .ok_or_else(|| FetchError::Answer("no broker URL".into()))?;
        let mut resp = http
            .get(format!("{url}/v1/status/stream"))
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(FetchError::transport)?;
        if !resp.status().is_success() {
            return Err(FetchError::status(resp.status()));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(FetchError::transport)? {
            buf.extend_from_slice(&chunk);
            if buf.len() > 8 * 1024 * 1024 {
                return Err(FetchError::Answer("stream event too large".into()));
            }
            while let Some(end) = find_event_end(&buf) {
                let raw: Vec<u8> = buf.drain(..end).collect();
                self.handle_event(http, gate, broker, &raw).await;
            }
        }
        Ok(())
    }

    async fn handle_event(
        &self,
        http: &reqwest::Client,
        gate: &GateState,
        broker: usize,
        raw: &[u8],
    ) {
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
            // Fetch the list from the broker whose stream announced it (or
            // the next one, should it fail meanwhile).
            None => self.fetch_path(http, gate, broker, &ev.url).await,
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
