//! The relying-party gate: a tower [`Layer`] for axum services that admits a
//! request only when it carries a valid, unrevoked, key-bound Writ token and
//! a fresh proof of possession of that key.
//!
//! Each request must carry `Authorization: Writ <b64url token>` and
//! `Writ-PoP: <b64url proof>` (see `verifier_lib::pop`). The gate checks, in
//! order: presence, the token (signature, issuer, audience, validity), the
//! revocation status (a cached signed status list no older than
//! `max_status_age_secs`; without one the request is denied unless the
//! token's audience is allowed offline), then the proof (signature by the
//! token's `cnf` key, method, path, body digest, token digest, time window,
//! replay). A refusal is `401` (no or bad credentials) or `403` (revoked,
//! status unavailable) with `{"error": {"code", "message"}}`. An admitted
//! request carries the [`VerifiedToken`] in its extensions.
//!
//! [`StatusFollower`] keeps the cache fresh by polling `/v1/status`
//! (ETag/304) and, optionally, following `/v1/status/stream` (SSE).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tower::{Layer, Service};
use verifier_lib::api::governance::{StatusEvent, AUTH_SCHEME, POP_HEADER};
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::{self, PopError, ReplayCache, RequestContext, Window};
use verifier_lib::status::{self, StatusList};
use verifier_lib::token::{TokenError, TokenVerifier, VerifiedToken};

/// Unix seconds; injectable for tests.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_now() -> Now {
    Arc::new(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

/// What the gate requires.
#[derive(Clone)]
pub struct GateConfig {
    /// Token keys and expectations (issuer, audience, lifetimes).
    pub verifier: TokenVerifier,
    pub pop_window: Window,
    /// Deny when the newest confirmed status list is older than this.
    pub max_status_age_secs: i64,
    /// Audiences admitted without a fresh status list (still PoP-checked).
    pub allow_offline: BTreeSet<String>,
    /// Proofs remembered for replay detection.
    pub replay_capacity: usize,
    /// Largest request body buffered for the body digest.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for GateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateConfig")
            .field("expectations", self.verifier.expectations())
            .field("max_status_age_secs", &self.max_status_age_secs)
            .field("allow_offline", &self.allow_offline)
            .finish_non_exhaustive()
    }
}

/// Why the gate refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateDenial {
    #[error("Authorization: Writ <token> is required")]
    TokenMissing,
    #[error("the token is not base64url")]
    TokenMalformed,
    #[error("token: {0}")]
    TokenInvalid(TokenError),
    #[error("Writ-PoP header is required")]
    PopMissing,
    #[error("{0}")]
    Pop(PopError),
    #[error("token {cti} is revoked (status list version {version})")]
    TokenRevoked { cti: String, version: u64 },
    #[error("no status list confirmed in the last {max_age_secs} s (newest: {age})")]
    StatusUnavailable { max_age_secs: i64, age: String },
    #[error("request body larger than {max} bytes")]
    BodyTooLarge { max: usize },
}

impl GateDenial {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GateDenial::TokenMissing => "token_missing",
            GateDenial::TokenMalformed => "token_malformed",
            GateDenial::TokenInvalid(TokenError::AudienceMismatch { .. }) => "token_wrong_audience",
            GateDenial::TokenInvalid(TokenError::Expired { .. }) => "token_expired",
            GateDenial::TokenInvalid(_) => "token_invalid",
            GateDenial::PopMissing => "pop_missing",
            GateDenial::Pop(e) => e.code(),
            GateDenial::TokenRevoked { .. } => "token_revoked",
            GateDenial::StatusUnavailable { .. } => "status_unavailable",
            GateDenial::BodyTooLarge { .. } => "body_too_large",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GateDenial::TokenRevoked { .. } | GateDenial::StatusUnavailable { .. } => {
                StatusCode::FORBIDDEN
            }
            GateDenial::TokenInvalid(TokenError::AudienceMismatch { .. }) => StatusCode::FORBIDDEN,
            GateDenial::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut r = Response::new(Body::from(body.to_string()));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        r
    }
}

#[derive(Debug, Clone)]
struct Confirmed {
    list: Arc<StatusList>,
    /// Local time the list was last confirmed current (fetch, 304, stream).
    confirmed_at: i64,
}

/// The gate's shared state: configuration, status cache and replay cache.
pub struct GateState {
    config: GateConfig,
    status: RwLock<Option<Confirmed>>,
    replay: Mutex<ReplayCache>,
    now: Now,
}

impl std::fmt::Debug for GateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GateState {
    pub fn new(config: GateConfig, now: Now) -> Arc<Self> {
        let replay = Mutex::new(ReplayCache::new(config.replay_capacity));
        Arc::new(GateState {
            config,
            status: RwLock::new(None),
            replay,
            now,
        })
    }

    pub fn now(&self) -> i64 {
        (self.now)()
    }

    /// Install a verified status list (confirmed now), unless an equal or
    /// newer version is already held.
    pub fn install(&self, list: StatusList) {
        let now = self.now();
        if let Ok(mut s) = self.status.write() {
            let newer = s.as_ref().is_none_or(|c| list.version >= c.list.version);
            if newer {
                *s = Some(Confirmed {
                    list: Arc::new(list),
                    confirmed_at: now,
                });
            } else if let Some(c) = s.as_mut() {
                c.confirmed_at = now;
            }
        }
    }

    /// The held list is still current (304, stream keep-alive).
    pub fn confirm(&self) {
        let now = self.now();
        if let Ok(mut s) = self.status.write() {
            if let Some(c) = s.as_mut() {
                c.confirmed_at = now;
            }
        }
    }

    /// Version of the held list, if any.
    pub fn status_version(&self) -> Option<u64> {
        self.status
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|c| c.list.version))
    }

    fn check_status(&self, token: &VerifiedToken, now: i64) -> Result<(), GateDenial> {
        let held = self.status.read().ok().and_then(|s| s.clone());
        let max_age = self.config.max_status_age_secs;
        let fresh = held
            .as_ref()
            .filter(|c| now.saturating_sub(c.confirmed_at) <= max_age && now < c.list.expires_at);
        // A revoked token stays refused even when the list is old.
        if let Some(c) = &held {
            if c.list.is_revoked(&token.claims.cti) {
                return Err(GateDenial::TokenRevoked {
                    cti: hex::encode(&token.claims.cti),
                    version: c.list.version,
                });
            }
        }
        // Offline acceptance: the broker's policy said so in the token, or
        // this relying party's own configuration does for the audience.
        if fresh.is_some()
            || token.claims.offline_ok
            || self.config.allow_offline.contains(&token.claims.aud)
        {
            return Ok(());
        }
        Err(GateDenial::StatusUnavailable {
            max_age_secs: max_age,
            age: held.map_or("none".into(), |c| {
                format!("{} s old", now.saturating_sub(c.confirmed_at))
            }),
        })
    }

    /// Decide on a request given its parts; returns the verified token.
    pub fn admit(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        proof: Option<&str>,
        body: &[u8],
    ) -> Result<VerifiedToken, GateDenial> {
        let now = self.now();
        let b64 = authorization
            .and_then(|v| v.strip_prefix(AUTH_SCHEME))
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(GateDenial::TokenMissing)?;
        let token_bytes = URL_SAFE_NO_PAD
            .decode(b64.trim())
            .map_err(|_| GateDenial::TokenMalformed)?;
        let proof = proof.ok_or(GateDenial::PopMissing)?;
        let proof = URL_SAFE_NO_PAD
            .decode(proof.trim())
            .map_err(|_| GateDenial::Pop(PopError::Envelope(TokenError::PemMalformed)))?;
        let token = self
            .config
            .verifier
            .verify(&token_bytes, now)
            .map_err(GateDenial::TokenInvalid)?;
        self.check_status(&token, now)?;
        let body_digest = HashAlg::Sha256.digest(body);
        let ctx = RequestContext {
            method,
            path,
            body_digest: &body_digest,
            challenge: None,
        };
        let mut replay = self
            .replay
            .lock()
            .map_err(|_| GateDenial::Pop(PopError::ReplayCacheFull))?;
        pop::verify(
            &proof,
            &token,
            &ctx,
            now,
            self.config.pop_window,
            &mut *replay,
        )
        .map_err(GateDenial::Pop)?;
        Ok(token)
    }
}

/// The tower layer.
#[derive(Debug, Clone)]
pub struct GateLayer {
    state: Arc<GateState>,
}

impl GateLayer {
    pub fn new(state: Arc<GateState>) -> Self {
        GateLayer { state }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The gate service around `S`.
#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    state: Arc<GateState>,
}

impl<S> Service<Request<Body>> for Gate<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let max = state.config.max_body_bytes;
            let bytes = match axum::body::to_bytes(body, max).await {
                Ok(b) => b,
                Err(_) => return Ok(GateDenial::BodyTooLarge { max }.into_response()),
            };
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
            let path = parts
                .uri
                .path_and_query()
                .map_or(parts.uri.path(), |p| p.as_str());
            let verdict = state.admit(
                parts.method.as_str(),
                path,
                header(header::AUTHORIZATION.as_str()),
                header(POP_HEADER),
                &bytes,
            );
            match verdict {
                Ok(token) => {
                    parts.extensions.insert(token);
                    inner
                        .call(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(denial) => {
                    tracing::info!(code = denial.code(), reason = %denial, "gate refused request");
                    Ok(denial.into_response())
                }
            }
        })
    }
}

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
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    fn verify_and_install(&self, gate: &GateState, bytes: &[u8]) -> Result<(), String> {
        let v = &gate.config.verifier;
        let list = status::verify(
            bytes,
            v.keys(),
            &v.expectations().issuer,
            gate.now(),
            self.leeway_secs,
        )
        .map_err(|e| e.to_string())?;
        gate.install(list);
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
            gate.confirm();
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
        if kind == "message" && data.is_empty() {
            // Keep-alive comments prove the stream (and so the list) is current.
            gate.confirm();
            return;
        }
        if kind != "status" {
            return;
        }
        let Ok(ev) = serde_json::from_str::<StatusEvent>(&data) else {
            tracing::warn!("unreadable status event");
            return;
        };
        if gate.status_version() == Some(ev.version) {
            gate.confirm();
            return;
        }
        let result = match &ev.list {
            Some(bytes) => self.verify_and_install(gate, bytes),
            None => {
                let mut none = None;
                self.poll_once(http, gate, &mut none).await
            }
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

/// Client side: the two headers for a request with a key-bound token.
pub fn request_headers(
    token: &[u8],
    key: &verifier_lib::token::SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<[(String, String); 2], PopError> {
    let mut jti = [0u8; pop::JTI_LEN];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| {
        PopError::Envelope(TokenError::Crypto {
            operation: "random jti",
        })
    })?;
    let digest = HashAlg::Sha256.digest(body);
    let proof = pop::create(
        key,
        token,
        &RequestContext {
            method,
            path,
            body_digest: &digest,
            challenge: None,
        },
        now,
        jti,
    )?;
    Ok([
        (
            header::AUTHORIZATION.as_str().to_owned(),
            format!("{AUTH_SCHEME} {}", URL_SAFE_NO_PAD.encode(token)),
        ),
        (POP_HEADER.to_owned(), URL_SAFE_NO_PAD.encode(proof)),
    ])
}
