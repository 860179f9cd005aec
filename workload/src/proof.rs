//! The presenting side of a Writ gate: the `Authorization: Writ <token>`
//! header and the `Writ-PoP` proof of possession of the token's `cnf` key
//! for one request (method, path and query, body digest; see
//! `verifier_lib::pop`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verifier_lib::api::governance::{AUTH_SCHEME, POP_HEADER};
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::{self, PopError, RequestContext};
use verifier_lib::token::{SigningKey, TokenError};

/// The `Authorization` header's name.
pub const AUTHORIZATION: &str = "authorization";

/// The proof for one request: `path` is the request target as the gate
/// sees it (path and query, e.g. `/work?id=1`), `body` the exact body.
fn proof(
    token: &[u8],
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<Vec<u8>, PopError> {
    let mut jti = [0u8; pop::JTI_LEN];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| {
        PopError::Envelope(TokenError::Crypto {
            operation: "random jti",
        })
    })?;
    let digest = HashAlg::Sha256.digest(body);
    pop::create(
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
    )
}

/// The two headers (name, value) for a request with a key-bound token:
/// `Authorization: Writ <token>` and `Writ-PoP: <proof>`.
pub fn request_headers(
    token: &[u8],
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<[(String, String); 2], PopError> {
    let proof = proof(token, key, method, path, body, now)?;
    Ok([
        (
            AUTHORIZATION.to_owned(),
            format!("{AUTH_SCHEME} {}", URL_SAFE_NO_PAD.encode(token)),
        ),
        (POP_HEADER.to_owned(), URL_SAFE_NO_PAD.encode(proof)),
    ])
}

/// The proof header as one line, `Writ-PoP: <proof>` (what
/// `writ-attester proof` prints for `curl -H`).
pub fn pop_header(
    token: &[u8],
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<String, PopError> {
    let proof = proof(token, key, method, path, body, now)?;
    Ok(format!("{POP_HEADER}: {}", URL_SAFE_NO_PAD.encode(proof)))
}

/// The request target a gate checks a proof against: the path and query
/// of `url` (`/` when it has no path), without any fragment.
pub fn request_target(url: &str) -> Result<String, ProofTargetError> {
    let bad = || ProofTargetError {
        url: url.to_owned(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme.is_empty() || rest.is_empty() {
        return Err(bad());
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let target = match rest.find(['/', '?']).and_then(|i| rest.get(i..)) {
        Some(t) if t.starts_with('?') => format!("/{t}"),
        Some(t) => t.to_owned(),
        None => "/".to_owned(),
    };
    Ok(target)
}

/// A URL without `scheme://authority`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not an absolute URL (scheme://host/path)")]
pub struct ProofTargetError {
    pub url: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_target_is_path_and_query() {
        assert_eq!(
            request_target("http://h:1/work?id=1#x").unwrap(),
            "/work?id=1"
        );
        assert_eq!(request_target("https://h").unwrap(), "/");
        assert_eq!(request_target("https://h/").unwrap(), "/");
        assert_eq!(request_target("https://h?q=1").unwrap(), "/?q=1");
        assert!(request_target("/work").is_err());
        assert!(request_target("://h/x").is_err());
    }
}
