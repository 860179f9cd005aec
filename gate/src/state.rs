//! What the gate requires ([`GateConfig`]), why it refuses ([`GateDenial`]),
//! and its shared state ([`GateState`]): the status-list cache, the replay
//! cache and the admission decision itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::http::{header, Response, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verifier_lib::api::governance::AUTH_SCHEME;
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::{self, PopError, ReplayCache, ReplayLimits, RequestContext, Window};
use verifier_lib::status::{StatusError, StatusList, VALID};
use verifier_lib::token::{Audience, TokenError, TokenVerifier, VerifiedToken};

/// Unix seconds; injectable for tests.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_now() -> Now {
    Arc::new(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

/// What the gate requires.
#[derive(Clone)]
pub struct GateConfig {
    /// Token keys and expectations (issuer, audience, lifetimes). The
    /// audience must be this relying party's own ([`Audience::Exactly`]):
    /// [`GateState::new`] refuses [`Audience::Any`].
    pub verifier: TokenVerifier,
    pub pop_window: Window,
    /// Deny when the held status list was signed (its `issued_at`) more than
    /// this many seconds ago, or its signed `expires_at` has passed. Only
    /// the signed times count: a `304` or a stream keep-alive is
    /// unauthenticated and confirms nothing.
    pub max_status_age_secs: i64,
    /// Audiences admitted without a fresh status list (still PoP-checked).
    pub allow_offline: BTreeSet<String>,
    /// Proofs remembered for replay detection, in all (refuses when full).
    pub replay_capacity: usize,
    /// Proofs remembered per token `cnf` key (refuses only that key's
    /// proofs when full), so one token holder cannot fill the cache for the
    /// others. It caps one key at `replay_capacity_per_key /
    /// pop_window.max_age_secs` requests per second, sustained: e.g. 10 000
    /// with the default 60 s window allows ≈ 166 requests/s per key.
    pub replay_capacity_per_key: usize,
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

/// Why a [`GateConfig`] was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateConfigError {
    /// The token expectations accept any audience; a relying party must
    /// name the audience its tokens are minted for.
    #[error("gate for issuer {issuer}: the token expectations accept any audience; name this relying party's audience")]
    AnyAudience { issuer: String },
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
    #[error("token {cti} has status {status} in {uri} (version {version})")]
    TokenRevoked {
        cti: String,
        uri: String,
        status: u8,
        version: u64,
    },
    /// The token's `status` claim is missing or points outside its list.
    #[error("token status: {0}")]
    TokenStatus(StatusError),
    #[error("no status list signed in the last {max_age_secs} s and unexpired (newest: {age})")]
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
            GateDenial::TokenStatus(StatusError::TokenUnlisted) => "token_unlisted",
            GateDenial::TokenStatus(_) => "token_status_invalid",
            GateDenial::StatusUnavailable { .. } => "status_unavailable",
            GateDenial::BodyTooLarge { .. } => "body_too_large",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GateDenial::TokenRevoked { .. }
            | GateDenial::TokenStatus(_)
            | GateDenial::StatusUnavailable { .. } => StatusCode::FORBIDDEN,
            GateDenial::TokenInvalid(TokenError::AudienceMismatch { .. }) => StatusCode::FORBIDDEN,
            GateDenial::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    pub(crate) fn into_response(self) -> Response<Body> {
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

/// The gate's shared state: configuration, status cache and replay cache.
pub struct GateState {
    config: GateConfig,
    /// The newest verified list of each URI (one per live epoch); its
    /// freshness is its signed `iat` / `exp`, never the time it was
    /// fetched or re-confirmed.
    status: RwLock<BTreeMap<String, Arc<StatusList>>>,
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
    /// The gate's state for `config`, reading time from `now`. Refuses a
    /// configuration whose token expectations accept any audience.
    pub fn new(config: GateConfig, now: Now) -> Result<Arc<Self>, GateConfigError> {
        let expectations = config.verifier.expectations();
        if expectations.audience == Audience::Any {
            return Err(GateConfigError::AnyAudience {
                issuer: expectations.issuer.clone(),
            });
        }
        let replay = Mutex::new(ReplayCache::new(ReplayLimits {
            max_entries: config.replay_capacity,
            max_entries_per_key: config.replay_capacity_per_key,
        }));
        Ok(Arc::new(GateState {
            config,
            status: RwLock::new(BTreeMap::new()),
            replay,
            now,
        }))
    }

    /// The configuration the gate enforces.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    pub fn now(&self) -> i64 {
        (self.now)()
    }

    /// Install a verified status list unless the held one of its URI is
    /// newer: a higher version, or the same version signed later.
    /// Installing an older signature (a replay) extends nothing.
    pub fn install(&self, list: StatusList) {
        if let Ok(mut s) = self.status.write() {
            let newer = s
                .get(&list.uri)
                .is_none_or(|c| (list.version, list.issued_at) > (c.version, c.issued_at));
            if newer {
                s.insert(list.uri.clone(), Arc::new(list));
            }
        }
    }

    /// Forget the list of `uri` (the broker says it is retired: every token
    /// it covered has expired).
    pub fn retire(&self, uri: &str) {
        if let Ok(mut s) = self.status.write() {
            s.remove(uri);
        }
    }

    /// URIs of the held lists.
    pub fn held_uris(&self) -> Vec<String> {
        self.status
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The held list of `uri`.
    pub fn held(&self, uri: &str) -> Option<Arc<StatusList>> {
        self.status.read().ok().and_then(|s| s.get(uri).cloned())
    }

    /// Highest version among the held lists, if any.
    pub fn status_version(&self) -> Option<u64> {
        self.status
            .read()
            .ok()
            .and_then(|s| s.values().map(|c| c.version).max())
    }

    /// Newest signed `iat` among the held lists, if any.
    pub fn status_issued_at(&self) -> Option<i64> {
        self.status
            .read()
            .ok()
            .and_then(|s| s.values().map(|c| c.issued_at).max())
    }

    fn check_status(&self, token: &VerifiedToken, now: i64) -> Result<(), GateDenial> {
        let offline =
            token.claims.offline_ok || self.config.allow_offline.contains(&token.claims.aud);
        let Some(r) = token.claims.status.as_ref() else {
            // Every Writ token names its list; one that does not cannot be
            // revoked, so it is refused.
            return Err(GateDenial::TokenStatus(StatusError::TokenUnlisted));
        };
        let held = self.held(&r.uri);
        let max_age = self.config.max_status_age_secs;
        // A revoked token stays refused even when the list is old.
        if let Some(c) = &held {
            let status = c.status_of(Some(r)).map_err(GateDenial::TokenStatus)?;
            if status != VALID {
                return Err(GateDenial::TokenRevoked {
                    cti: hex::encode(&token.claims.cti),
                    uri: r.uri.clone(),
                    status,
                    version: c.version,
                });
            }
        }
        // Freshness is what the broker signed: the list's own issue time
        // and expiry. Nothing unauthenticated (a 304, a keep-alive) counts.
        let fresh = held
            .as_ref()
            .filter(|c| now.saturating_sub(c.issued_at) <= max_age && now < c.expires_at);
        // Offline acceptance: the broker's policy said so in the token, or
        // this relying party's own configuration does for the audience.
        if fresh.is_some() || offline {
            return Ok(());
        }
        Err(GateDenial::StatusUnavailable {
            max_age_secs: max_age,
            age: held.map_or_else(
                || format!("none for {}", r.uri),
                |c| {
                    format!(
                        "version {} signed {} s ago, expires at {}",
                        c.version,
                        now.saturating_sub(c.issued_at),
                        c.expires_at
                    )
                },
            ),
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
        let checked = pop::check(&proof, &token, &ctx, now, self.config.pop_window)
            .map_err(GateDenial::Pop)?;
        // Recorded last: a request refused for its token, its status or its
        // proof takes no room in the replay cache.
        let mut replay = self
            .replay
            .lock()
            .map_err(|_| GateDenial::Pop(PopError::ReplayCacheUnavailable))?;
        checked.record(&mut *replay, now).map_err(GateDenial::Pop)?;
        Ok(token)
    }
}
