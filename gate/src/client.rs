//! The presenting side: the headers a client sends through a gate.

use axum::http::header;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verifier_lib::api::governance::{AUTH_SCHEME, POP_HEADER};
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::{self, PopError, RequestContext};
use verifier_lib::token::TokenError;

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
