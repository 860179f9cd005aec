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
//! [`check`] verifies the envelope, the signature with the token's `cnf` key,
//! that the proof names this request (method, path, body, token, challenge)
//! and that its timestamp is within the window; it records nothing.
//! [`CheckedProof::record`] then records it as used in the caller's
//! [`ReplayGuard`] (refusing a replay); a caller records only once every
//! other check of the request passed (e.g. the token is known and
//! unrevoked), so a refused request consumes no replay-cache room.
//! [`verify`] is both in one call. [`ReplayCache`] is a bounded guard,
//! partitioned by `cnf` key (module [`replay`]).

pub mod replay;

use ciborium::value::Value;

use crate::crypto::HashAlg;
use crate::signed::{self, OpenError};
use crate::token::cbor::{self, as_fixed_bytes, as_i64, as_text, int, required, IntMap};
use crate::token::{SigningKey, TokenError, VerifiedToken, DIGEST_LEN};

pub use replay::{key_id, KeyId, ProofId, ReplayCache, ReplayGuard, ReplayLimits};

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
    /// The proofs of this `cnf` key fill its share of the replay cache.
    #[error("proof of possession: {key_entries} live proofs of this key are remembered (at most {max}); refusing rather than forgetting")]
    ReplayKeyFull { key_entries: usize, max: usize },
    /// The replay cache as a whole is full.
    #[error("proof of possession: replay cache full ({entries} live proofs, at most {max}); refusing rather than forgetting")]
    ReplayCacheFull { entries: usize, max: usize },
    /// The replay cache cannot be used (a holder of its lock panicked).
    #[error("proof of possession: replay cache unavailable")]
    ReplayCacheUnavailable,
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
            PopError::ReplayKeyFull { .. } => "pop_replay_key_full",
            PopError::ReplayCacheFull { .. } => "pop_replay_cache_full",
            PopError::ReplayCacheUnavailable => "pop_replay_cache_unavailable",
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

/// A proof whose signature, request and window were checked, not yet
/// recorded as used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a checked proof must be recorded before the request is accepted"]
pub struct CheckedProof {
    proof: Proof,
    key: KeyId,
    id: ProofId,
    keep_until: i64,
}

impl CheckedProof {
    /// The proof's contents.
    pub fn proof(&self) -> &Proof {
        &self.proof
    }

    /// The `cnf` key the proof was made with.
    pub fn key(&self) -> &KeyId {
        &self.key
    }

    /// Until when (inclusive) the proof would be accepted, and so must be
    /// remembered.
    pub fn keep_until(&self) -> i64 {
        self.keep_until
    }

    /// Record the proof as used; refuses a replay or a full cache.
    pub fn record(self, seen: &mut dyn ReplayGuard, now: i64) -> Result<Proof, PopError> {
        seen.first_use(&self.key, self.id, self.keep_until, now)?;
        Ok(self.proof)
    }
}

/// Check `proof` for a request carrying the already verified `token`:
/// envelope, signature, request, token and window. Records nothing: call
/// [`CheckedProof::record`] once the rest of the request passed.
pub fn check(
    proof: &[u8],
    token: &VerifiedToken,
    ctx: &RequestContext<'_>,
    now: i64,
    window: Window,
) -> Result<CheckedProof, PopError> {
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
    let id: ProofId = HashAlg::Sha256
        .digest_parts([token.digest.as_slice(), p.jti.as_slice()])
        .try_into()
        .map_err(|_| {
            PopError::Envelope(TokenError::Crypto {
                operation: "digest",
            })
        })?;
    Ok(CheckedProof {
        keep_until: p.timestamp.saturating_add(window.max_age_secs.max(0)),
        key: key_id(cnf),
        id,
        proof: p,
    })
}

/// [`check`] and [`CheckedProof::record`] in one call, for a caller with
/// nothing else to check between them.
pub fn verify(
    proof: &[u8],
    token: &VerifiedToken,
    ctx: &RequestContext<'_>,
    now: i64,
    window: Window,
    seen: &mut dyn ReplayGuard,
) -> Result<Proof, PopError> {
    check(proof, token, ctx, now, window)?.record(seen, now)
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
            status: None,
        };
        let t = mint(&claims, &broker).unwrap();
        let v = VerifiedToken {
            claims,
            kid: broker.kid(),
            digest: HashAlg::Sha256.digest(&t),
        };
        (t, v)
    }

    fn cache(max_entries: usize, max_entries_per_key: usize) -> ReplayCache {
        ReplayCache::new(ReplayLimits {
            max_entries,
            max_entries_per_key,
        })
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
        let mut cache = cache(10, 10);
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
        let mut cache = cache(10, 10);
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
        let mut cache = cache(10, 1);
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
        let second = create(&key, &t, &c, 1520, [4; 16]).unwrap();
        assert_eq!(
            verify(&second, &v, &c, 1520, Window::default(), &mut cache),
            Err(PopError::ReplayKeyFull {
                key_entries: 1,
                max: 1
            })
        );
        // The first entry is kept while its proof is still in the window...
        assert!(matches!(
            verify(&second, &v, &c, 1560, Window::default(), &mut cache),
            Err(PopError::ReplayKeyFull { .. })
        ));
        // ...and once it has aged out, there is room again.
        verify(&second, &v, &c, 1561, Window::default(), &mut cache).unwrap();
    }

    #[test]
    fn check_records_nothing_and_record_refuses_a_replay() {
        let key = SigningKey::generate().unwrap();
        let (t, v) = token_for(&key);
        let (d, m, p) = ctx(b"{}");
        let c = RequestContext {
            method: m,
            path: p,
            body_digest: &d,
            challenge: None,
        };
        let proof = create(&key, &t, &c, 1500, [5; 16]).unwrap();
        let mut seen = cache(10, 10);
        let first = check(&proof, &v, &c, 1500, Window::default()).unwrap();
        let again = check(&proof, &v, &c, 1501, Window::default()).unwrap();
        assert_eq!(first, again);
        assert_eq!(first.key(), &key_id(&key.verifying_key()));
        assert_eq!(first.keep_until(), 1560);
        assert!(seen.is_empty());
        assert_eq!(first.record(&mut seen, 1501).unwrap().jti, vec![5; 16]);
        assert_eq!(seen.key_len(&key_id(&key.verifying_key())), 1);
        assert_eq!(again.record(&mut seen, 1502), Err(PopError::Replayed));
    }

    #[test]
    fn a_proof_at_the_edge_of_its_window_is_not_replayable() {
        // Regression: entries used to be dropped at `keep_until`, the last
        // second their proof is still accepted, so it could be used twice.
        let key = SigningKey::generate().unwrap();
        let (t, v) = token_for(&key);
        let (d, m, p) = ctx(b"{}");
        let c = RequestContext {
            method: m,
            path: p,
            body_digest: &d,
            challenge: None,
        };
        let proof = create(&key, &t, &c, 1500, [6; 16]).unwrap();
        let mut seen = cache(10, 10);
        verify(&proof, &v, &c, 1500, Window::default(), &mut seen).unwrap();
        assert_eq!(
            verify(&proof, &v, &c, 1560, Window::default(), &mut seen),
            Err(PopError::Replayed)
        );
        assert!(matches!(
            verify(&proof, &v, &c, 1561, Window::default(), &mut seen),
            Err(PopError::TooOld { .. })
        ));
    }
}
