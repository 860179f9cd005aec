//! Proof of possession of a token's `cnf` key (RFC 8747) for one request.
//!
//! A proof is a COSE_Sign1 (ES256, protected header
//! `{1: -7, 3: "application/writ-pop+cbor"}`, no kid) signed by the private
//! half of the token's `cnf` key, whose payload is the deterministic CBOR map
//!
//! ```text
//! { 1: tstr,            ; HTTP method, upper case ("POST")
//!   2: tstr,            ; request path and query, as sent ("/v1/x?y=1")
//!   3: int,             ; timestamp (Unix seconds)
//!   4: bstr .size 32,   ; SHA-256 of the request body (of b"" when empty)
//!   5: bstr .size 32,   ; SHA-256 of the token bytes presented with it
//!   6: bstr .size 16,   ; jti: random, unique per proof
//!   ? 7: bstr }         ; the server's challenge, when it issued one
//! ```
//!
//! [`verify`] checks the envelope, the signature with the token's `cnf` key,
//! that the proof names this request (method, path, body, token, challenge),
//! that its timestamp is within the window, and that it was not seen before
//! (the caller's [`ReplayGuard`]; [`ReplayCache`] is a bounded one).

use std::collections::{HashMap, VecDeque};

use ciborium::value::Value;

use crate::crypto::HashAlg;
use crate::signed::{self, OpenError};
use crate::token::cbor::{self, as_fixed_bytes, as_i64, as_text, int, required, IntMap};
use crate::token::{SigningKey, TokenError, VerifiedToken, DIGEST_LEN};

/// Content type of a proof.
pub const CONTENT_TYPE: &str = "application/writ-pop+cbor";
/// Length of a proof's jti.
pub const JTI_LEN: usize = 16;

/// What the request a proof is for looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext<'a> {
    pub method: &'a str,
    /// Path and query, exactly as on the request line.
    pub path: &'a str,
    /// SHA-256 of the body.
    pub body_digest: &'a [u8],
    /// The challenge the server issued for this request, if any.
    pub challenge: Option<&'a [u8]>,
}

/// How far a proof's timestamp may be from `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Oldest accepted proof, in seconds before `now`.
    pub max_age_secs: i64,
    /// Clock skew tolerated into the future, in seconds.
    pub max_future_secs: i64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            max_age_secs: 60,
            max_future_secs: 5,
        }
    }
}

/// A verified proof's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub method: String,
    pub path: String,
    pub timestamp: i64,
    pub body_digest: Vec<u8>,
    pub token_digest: Vec<u8>,
    pub jti: Vec<u8>,
    pub challenge: Option<Vec<u8>>,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PopError {
    #[error("proof of possession: {0}")]
    Envelope(#[from] TokenError),
    #[error("proof of possession: content type {actual:?}, expected {expected}")]
    ContentType {
        expected: &'static str,
        actual: Option<String>,
    },
    #[error("the token has no cnf key: it cannot be used with proof of possession")]
    TokenHasNoCnf,
    #[error("proof of possession: {field} is {actual:?}, the request has {expected:?}")]
    Mismatch {
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "proof of possession: timestamp {timestamp} is older than {max_age_secs} s (now {now})"
    )]
    TooOld {
        timestamp: i64,
        now: i64,
        max_age_secs: i64,
    },
    #[error("proof of possession: timestamp {timestamp} is in the future (now {now})")]
    InFuture { timestamp: i64, now: i64 },
    #[error("proof of possession: already used (replay)")]
    Replayed,
    #[error("proof of possession: replay cache full; refusing rather than forgetting")]
    ReplayCacheFull,
}

impl PopError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PopError::Envelope(TokenError::BadSignature) => "pop_bad_signature",
            PopError::Envelope(_) | PopError::ContentType { .. } => "pop_malformed",
            PopError::TokenHasNoCnf => "pop_token_not_key_bound",
            PopError::Mismatch { .. } => "pop_wrong_request",
            PopError::TooOld { .. } | PopError::InFuture { .. } => "pop_outside_window",
            PopError::Replayed => "pop_replayed",
            PopError::ReplayCacheFull => "pop_replay_cache_full",
        }
    }
}

impl From<OpenError> for PopError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Envelope(t) => PopError::Envelope(t),
            OpenError::ContentType { expected, actual } => {
                PopError::ContentType { expected, actual }
            }
        }
    }
}

/// Remembers proofs already accepted.
pub trait ReplayGuard {
    /// Record `id` as used until `keep_until`; `Err(Replayed)` if it was
    /// already used, `Err(ReplayCacheFull)` if it cannot be remembered.
    fn first_use(&mut self, id: [u8; 32], keep_until: i64, now: i64) -> Result<(), PopError>;
}

/// A bounded replay cache: entries live until their proof would be too old
/// anyway; when full of live entries it refuses (fails closed).
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    seen: HashMap<[u8; 32], i64>,
    order: VecDeque<([u8; 32], i64)>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn evict(&mut self, now: i64) {
        // Entries are appended with non-decreasing keep_until in practice;
        // pop from the front while expired.
        while let Some((id, until)) = self.order.front().copied() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&id) == Some(&until) {
                self.seen.remove(&id);
            }
        }
    }
}

impl ReplayGuard for ReplayCache {
    fn first_use(&mut self, id: [u8; 32], keep_until: i64, now: i64) -> Result<(), PopError> {
        self.evict(now);
        if self.seen.contains_key(&id) {
            return Err(PopError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(PopError::ReplayCacheFull);
        }
        self.seen.insert(id, keep_until);
        self.order.push_back((id, keep_until));
        Ok(())
    }
}

/// Create a proof for `ctx` with the `cnf` private key, for `token`.
pub fn create(
    key: &SigningKey,
    token: &[u8],
    ctx: &RequestContext<'_>,
    now: i64,
    jti: [u8; JTI_LEN],
) -> Result<Vec<u8>, PopError> {
    let mut entries = vec![
        (int(1), Value::Text(ctx.method.to_owned())),
        (int(2), Value::Text(ctx.path.to_owned())),
        (int(3), int(now)),
        (int(4), Value::Bytes(ctx.body_digest.to_vec())),
        (int(5), Value::Bytes(HashAlg::Sha256.digest(token))),
        (int(6), Value::Bytes(jti.to_vec())),
    ];
    if let Some(c) = ctx.challenge {
        entries.push((int(7), Value::Bytes(c.to_vec())));
    }
    let payload = cbor::encode(&cbor::canonical_map(entries, "proof")?, "proof")?;
    Ok(signed::seal(payload, key, CONTENT_TYPE, false)?)
}

fn decode(payload: &[u8]) -> Result<Proof, PopError> {
    let mut m = IntMap::from_value(cbor::read_exact(payload, "proof")?, "proof")?;
    Ok(Proof {
        method: as_text(required(m.take(1), "pop/method")?, "pop/method")?,
        path: as_text(required(m.take(2), "pop/path")?, "pop/path")?,
        timestamp: as_i64(required(m.take(3), "pop/ts")?, "pop/ts")?,
        body_digest: as_fixed_bytes(required(m.take(4), "pop/body")?, "pop/body", DIGEST_LEN)?,
        token_digest: as_fixed_bytes(required(m.take(5), "pop/token")?, "pop/token", DIGEST_LEN)?,
        jti: as_fixed_bytes(required(m.take(6), "pop/jti")?, "pop/jti", JTI_LEN)?,
        challenge: m
            .take(7)
            .map(|v| cbor::as_bytes(v, "pop/challenge"))
            .transpose()?,
    })
}

fn mismatch(field: &'static str, expected: impl AsRef<[u8]>, actual: impl AsRef<[u8]>) -> PopError {
    let show = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => hex::encode(b),
    };
    PopError::Mismatch {
        field,
        expected: show(expected.as_ref()),
        actual: show(actual.as_ref()),
    }
}

/// Verify `proof` for a request carrying the already verified `token`.
pub fn verify(
    proof: &[u8],
    token: &VerifiedToken,
    ctx: &RequestContext<'_>,
    now: i64,
    window: Window,
    seen: &mut dyn ReplayGuard,
) -> Result<Proof, PopError> {
    let cnf = token.claims.cnf.as_ref().ok_or(PopError::TokenHasNoCnf)?;
    let opened = signed::open(proof, CONTENT_TYPE)?;
    let p = decode(opened.payload)?;
    opened.verify_with(cnf)?;
    if p.token_digest != token.digest {
        return Err(mismatch("token", &token.digest, &p.token_digest));
    }
    if p.method != ctx.method {
        return Err(mismatch("method", ctx.method, &p.method));
    }
    if p.path != ctx.path {
        return Err(mismatch("path", ctx.path, &p.path));
    }
    if p.body_digest != ctx.body_digest {
        return Err(mismatch("body", ctx.body_digest, &p.body_digest));
    }
    if p.challenge.as_deref() != ctx.challenge {
        return Err(mismatch(
            "challenge",
            ctx.challenge.unwrap_or_default(),
            p.challenge.as_deref().unwrap_or_default(),
        ));
    }
    if p.timestamp < now.saturating_sub(window.max_age_secs.max(0)) {
        return Err(PopError::TooOld {
            timestamp: p.timestamp,
            now,
            max_age_secs: window.max_age_secs,
        });
    }
    if p.timestamp > now.saturating_add(window.max_future_secs.max(0)) {
        return Err(PopError::InFuture {
            timestamp: p.timestamp,
            now,
        });
    }
    let id: [u8; 32] = HashAlg::Sha256
        .digest_parts([token.digest.as_slice(), p.jti.as_slice()])
        .try_into()
        .map_err(|_| {
            PopError::Envelope(TokenError::Crypto {
                operation: "digest",
            })
        })?;
    seen.first_use(
        id,
        p.timestamp.saturating_add(window.max_age_secs.max(0)),
        now,
    )?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{mint, Appraisal, Claims, EarStatus, TrustVector, PROFILE};

    fn token_for(cnf: &SigningKey) -> (Vec<u8>, VerifiedToken) {
        let broker = SigningKey::generate().unwrap();
        let claims = Claims {
            iss: "writ-broker".into(),
            sub: "h".into(),
            aud: "w".into(),
            exp: 2000,
            nbf: 1000,
            iat: 1000,
            cti: vec![1; 16],
            eat_nonce: None,
            eat_profile: PROFILE.into(),
            appraisal: Appraisal {
                status: EarStatus::Affirming,
                trust_vector: TrustVector::default(),
                policy_id: "p".into(),
                verifier_id: "v".into(),
                submods: Default::default(),
            },
            workload_digest: None,
            cnf: Some(cnf.verifying_key()),
            lineage: None,
            scope: vec![],
            audit_index: None,
            offline_ok: false,
        };
        let t = mint(&claims, &broker).unwrap();
        let v = VerifiedToken {
            claims,
            kid: broker.kid(),
            digest: HashAlg::Sha256.digest(&t),
        };
        (t, v)
    }

    fn ctx(body: &[u8]) -> (Vec<u8>, &'static str, &'static str) {
        (HashAlg::Sha256.digest(body), "POST", "/v1/thing")
    }

    #[test]
    fn accepts_once_then_refuses_replay() {
        let key = SigningKey::generate().unwrap();
        let (t, v) = token_for(&key);
        let (d, m, p) = ctx(b"{}");
        let c = RequestContext {
            method: m,
            path: p,
            body_digest: &d,
            challenge: None,
        };
        let proof = create(&key, &t, &c, 1500, [7; 16]).unwrap();
        let mut cache = ReplayCache::new(10);
        let ok = verify(&proof, &v, &c, 1510, Window::default(), &mut cache).unwrap();
        assert_eq!(ok.jti, vec![7; 16]);
        assert_eq!(
            verify(&proof, &v, &c, 1511, Window::default(), &mut cache),
            Err(PopError::Replayed)
        );
    }

    #[test]
    fn refuses_other_key_other_request_and_stale_proofs() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let (t, v) = token_for(&key);
        let (d, m, p) = ctx(b"{}");
        let c = RequestContext {
            method: m,
            path: p,
            body_digest: &d,
            challenge: None,
        };
        let mut cache = ReplayCache::new(10);
        let forged = create(&other, &t, &c, 1500, [1; 16]).unwrap();
        let e = verify(&forged, &v, &c, 1500, Window::default(), &mut cache).unwrap_err();
        assert_eq!(e, PopError::Envelope(TokenError::BadSignature));
        assert_eq!(e.code(), "pop_bad_signature");

        let proof = create(&key, &t, &c, 1500, [2; 16]).unwrap();
        let d2 = HashAlg::Sha256.digest(b"{\"x\":1}");
        let c2 = RequestContext {
            body_digest: &d2,
            ..c
        };
        assert!(matches!(
            verify(&proof, &v, &c2, 1500, Window::default(), &mut cache),
            Err(PopError::Mismatch { field: "body", .. })
        ));
        let c3 = RequestContext {
            path: "/v1/other",
            ..c
        };
        assert!(matches!(
            verify(&proof, &v, &c3, 1500, Window::default(), &mut cache),
            Err(PopError::Mismatch { field: "path", .. })
        ));
        assert!(matches!(
            verify(&proof, &v, &c, 1561, Window::default(), &mut cache),
            Err(PopError::TooOld { .. })
        ));
        assert!(matches!(
            verify(&proof, &v, &c, 1490, Window::default(), &mut cache),
            Err(PopError::InFuture { .. })
        ));
        // Bound to the token it was made for.
        let (_, v_other) = token_for(&key);
        let mut v_other = v_other;
        v_other.digest = vec![0; 32];
        assert!(matches!(
            verify(&proof, &v_other, &c, 1500, Window::default(), &mut cache),
            Err(PopError::Mismatch { field: "token", .. })
        ));
    }

    #[test]
    fn challenge_must_match_and_cache_is_bounded() {
        let key = SigningKey::generate().unwrap();
        let (t, v) = token_for(&key);
        let (d, m, p) = ctx(b"");
        let c = RequestContext {
            method: m,
            path: p,
            body_digest: &d,
            challenge: Some(b"srv-nonce"),
        };
        let proof = create(&key, &t, &c, 1500, [3; 16]).unwrap();
        let mut cache = ReplayCache::new(1);
        let none = RequestContext {
            challenge: None,
            ..c
        };
        assert!(matches!(
            verify(&proof, &v, &none, 1500, Window::default(), &mut cache),
            Err(PopError::Mismatch {
                field: "challenge",
                ..
            })
        ));
        verify(&proof, &v, &c, 1500, Window::default(), &mut cache).unwrap();
        let second = create(&key, &t, &c, 1500, [4; 16]).unwrap();
        assert_eq!(
            verify(&second, &v, &c, 1500, Window::default(), &mut cache),
            Err(PopError::ReplayCacheFull)
        );
        // Once the first entry has aged out, there is room again.
        verify(&second, &v, &c, 1561 - 1, Window::default(), &mut cache).unwrap();
    }
}
