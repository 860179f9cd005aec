//! Checking tokens: [`TokenVerifier::verify`] and the display-only
//! [`decode_unverified`].

use aws_lc_rs::digest;
use coset::iana::EnumI64;
use coset::{iana, Header, Label, RegisteredLabelWithPrivate};
use serde::{Deserialize, Serialize};

use super::claims::PROFILE;
use super::envelope::{self, Sign1};
use super::{hex_serde, Claims, KeySet, TokenError};

/// Default clock-skew allowance of [`Expectations::new`].
pub const DEFAULT_LEEWAY_SECS: i64 = 30;
/// Default maximum `exp − iat` of [`Expectations::new`].
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 3600;

/// Which `aud` a verifier accepts. There is no default: accepting every
/// audience is a choice the caller spells out ([`Audience::Any`],
/// [`Expectations::any_audience`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// `aud` must equal this string.
    Exactly(String),
    /// Any `aud`. Only for verifiers that deliberately serve every audience
    /// (a broker checking a parent token it will narrow, display tooling);
    /// a relying party names its own audience.
    Any,
}

/// What a relying party requires of a token beyond a valid signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Expectations {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (or, deliberately, any).
    pub audience: Audience,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (negative counts as 0).
    pub leeway_secs: i64,
    /// Largest accepted `exp − iat`.
    pub max_lifetime_secs: i64,
    /// Reject tokens without `writ.workload-digest`.
    pub require_workload_digest: bool,
}

impl Expectations {
    /// Expect `issuer` and exactly `audience`, [`DEFAULT_LEEWAY_SECS`],
    /// [`DEFAULT_MAX_LIFETIME_SECS`], no workload digest required.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self::with_audience(issuer, Audience::Exactly(audience.into()))
    }

    /// Expect `issuer` and accept ANY audience (see [`Audience::Any`]);
    /// otherwise as [`Expectations::new`].
    pub fn any_audience(issuer: impl Into<String>) -> Self {
        Self::with_audience(issuer, Audience::Any)
    }

    fn with_audience(issuer: impl Into<String>, audience: Audience) -> Self {
        Expectations {
            issuer: issuer.into(),
            audience,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            require_workload_digest: false,
        }
    }
}

/// A token whose signature, header and claims all passed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claims: Claims,
    /// The `kid` of the key that verified it.
    pub kid: String,
    /// SHA-256 of the token bytes (what a child's `writ.lineage` names).
    #[serde(with = "hex_serde::bytes")]
    pub digest: Vec<u8>,
}

/// Verifies Writ tokens against a key set and [`Expectations`].
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    keys: KeySet,
    expectations: Expectations,
}

impl TokenVerifier {
    pub fn new(keys: KeySet, expectations: Expectations) -> Self {
        TokenVerifier { keys, expectations }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn expectations(&self) -> &Expectations {
        &self.expectations
    }

    /// Verify `token` at `now_unix` (seconds). Checks, in order: tagged
    /// COSE_Sign1 with no trailing bytes; empty unprotected header; no `crit`;
    /// `alg` ES256; `kid` present and in the key set; claims well-typed;
    /// ES256 signature over the Sig_structure; then `eat_profile`, `iss`,
    /// `aud` (unless [`Audience::Any`]), `exp > iat`, lifetime, `exp`, `nbf`,
    /// `iat` and the workload digest.
    pub fn verify(&self, token: &[u8], now_unix: i64) -> Result<VerifiedToken, TokenError> {
        let sign1 = envelope::parse(token)?;
        check_headers(&sign1)?;
        let kid = kid_of(&sign1)?;
        let key = self
            .keys
            .find(&kid)
            .ok_or_else(|| TokenError::UnknownKey { kid: kid.clone() })?;
        let payload = sign1.payload.ok_or(TokenError::DetachedPayload)?;
        let claims = Claims::from_cbor_bytes(payload)?;
        key.verify(
            &envelope::sig_structure(sign1.protected_bytes, payload),
            sign1.signature,
        )?;
        self.check_claims(&claims, now_unix)?;
        Ok(VerifiedToken {
            claims,
            kid,
            digest: digest::digest(&digest::SHA256, token).as_ref().to_vec(),
        })
    }

    fn check_claims(&self, c: &Claims, now: i64) -> Result<(), TokenError> {
        let e = &self.expectations;
        if c.eat_profile != PROFILE {
            return Err(TokenError::ProfileMismatch {
                expected: PROFILE.to_string(),
                actual: c.eat_profile.clone(),
            });
        }
        if c.iss != e.issuer {
            return Err(TokenError::IssuerMismatch {
                expected: e.issuer.clone(),
                actual: c.iss.clone(),
            });
        }
        if let Audience::Exactly(expected) = &e.audience {
            if &c.aud != expected {
                return Err(TokenError::AudienceMismatch {
                    expected: expected.clone(),
                    actual: c.aud.clone(),
                });
            }
        }
        if c.exp <= c.iat {
            return Err(TokenError::ExpiresBeforeIssued {
                iat: c.iat,
                exp: c.exp,
            });
        }
        let lifetime = c.exp.saturating_sub(c.iat);
        if lifetime > e.max_lifetime_secs {
            return Err(TokenError::LifetimeTooLong {
                max: e.max_lifetime_secs,
                actual: lifetime,
            });
        }
        let leeway = e.leeway_secs.max(0);
        if now >= c.exp.saturating_add(leeway) {
            return Err(TokenError::Expired { exp: c.exp, now });
        }
        if now.saturating_add(leeway) < c.nbf {
            return Err(TokenError::NotYetValid { nbf: c.nbf, now });
        }
        if now.saturating_add(leeway) < c.iat {
            return Err(TokenError::IssuedInFuture { iat: c.iat, now });
        }
        if e.require_workload_digest && c.workload_digest.is_none() {
            return Err(TokenError::WorkloadDigestMissing);
        }
        Ok(())
    }
}

/// Decode a token's `kid` and claims WITHOUT verifying anything.
///
/// **This is not verification.** The signature, algorithm, issuer, audience,
/// profile and validity period are NOT checked, so anyone can produce input
/// this accepts. Use it only to display a token (CLI tools, logs); every
/// authorization decision must go through [`TokenVerifier::verify`].
pub fn decode_unverified(token: &[u8]) -> Result<(String, Claims), TokenError> {
    let sign1 = envelope::parse(token)?;
    let kid = kid_of(&sign1)?;
    let payload = sign1.payload.ok_or(TokenError::DetachedPayload)?;
    Ok((kid, Claims::from_cbor_bytes(payload)?))
}

pub(super) fn check_headers(sign1: &Sign1<'_>) -> Result<(), TokenError> {
    let unprotected = header_labels(&sign1.unprotected);
    if !unprotected.is_empty() {
        return Err(TokenError::UnprotectedHeaderNotEmpty {
            labels: unprotected,
        });
    }
    let h = &sign1.protected;
    if !h.crit.is_empty() {
        return Err(TokenError::CriticalHeader {
            labels: h.crit.iter().map(registered_label).collect(),
        });
    }
    match &h.alg {
        None => Err(TokenError::AlgorithmMissing),
        Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256)) => Ok(()),
        Some(other) => Err(TokenError::AlgorithmNotAllowed {
            alg: registered_label(other),
        }),
    }
}

pub(super) fn kid_of(sign1: &Sign1<'_>) -> Result<String, TokenError> {
    let kid = &sign1.protected.key_id;
    if kid.is_empty() {
        return Err(TokenError::KidMissing);
    }
    String::from_utf8(kid.clone()).map_err(|_| TokenError::KidNotUtf8 {
        kid_hex: hex::encode(kid),
    })
}

fn registered_label<T: EnumI64 + coset::iana::WithPrivateRange>(
    l: &RegisteredLabelWithPrivate<T>,
) -> String {
    match l {
        RegisteredLabelWithPrivate::Assigned(a) => a.to_i64().to_string(),
        RegisteredLabelWithPrivate::PrivateUse(i) => i.to_string(),
        RegisteredLabelWithPrivate::Text(t) => t.clone(),
    }
}

/// The labels present in a header, for error reports.
fn header_labels(h: &Header) -> Vec<String> {
    let mut out = Vec::new();
    let fixed = [
        (h.alg.is_some(), "1"),
        (!h.crit.is_empty(), "2"),
        (h.content_type.is_some(), "3"),
        (!h.key_id.is_empty(), "4"),
        (!h.iv.is_empty(), "5"),
        (!h.partial_iv.is_empty(), "6"),
        (!h.counter_signatures.is_empty(), "7"),
    ];
    out.extend(
        fixed
            .iter()
            .filter(|(present, _)| *present)
            .map(|(_, l)| (*l).to_string()),
    );
    out.extend(h.rest.iter().map(|(l, _)| match l {
        Label::Int(i) => i.to_string(),
        Label::Text(t) => t.clone(),
    }));
    out
}
