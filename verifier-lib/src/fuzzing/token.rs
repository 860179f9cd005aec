//! Fuzz entry points for `token`.

use std::sync::OnceLock;

use crate::token::{decode_unverified, Expectations, KeySet, SigningKey, TokenVerifier};

/// PKCS#8 DER (hex) of the ES256 key the fuzz verifier trusts. Public test
/// material, committed on purpose so seed tokens get past the signature
/// check: never use it for anything else.
pub const TOKEN_FUZZ_KEY_PKCS8_HEX: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02010104207b7daee7b32d195b2b707564e3b3c599c859bfdf06ea14b8bfbd911e58ade0f5a14403420004e9eaf3b0d0c50d85d33d986e2f16e03f4c93520a3698fbdde5a528aae06807fa0131d00e30c237de7f5e4adc0c494f68e069317751442041f07bb76aa996a404";
/// The fixed time the fuzz verifier checks at (2026-01-01T00:00:00Z).
pub const TOKEN_FUZZ_NOW: i64 = 1_767_225_600;
/// The issuer the fuzz verifier expects.
pub const TOKEN_FUZZ_ISSUER: &str = "https://broker.writ.test";

/// The fuzz-only signing key (see [`TOKEN_FUZZ_KEY_PKCS8_HEX`]).
pub fn token_fuzz_signing_key() -> Option<SigningKey> {
    let der = hex::decode(TOKEN_FUZZ_KEY_PKCS8_HEX).ok()?;
    SigningKey::from_pkcs8_der(&der).ok()
}

/// The verifier `token_decode` uses: the fuzz key, [`TOKEN_FUZZ_ISSUER`],
/// any audience, default leeway and lifetime.
pub fn token_fuzz_verifier() -> Option<&'static TokenVerifier> {
    static VERIFIER: OnceLock<Option<TokenVerifier>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let key = token_fuzz_signing_key()?;
            let keys = KeySet::new(vec![key.verifying_key()]).ok()?;
            Some(TokenVerifier::new(
                keys,
                Expectations::any_audience(TOKEN_FUZZ_ISSUER),
            ))
        })
        .as_ref()
}

/// Decode (display path) and fully verify arbitrary bytes as a token; also
/// try them as a COSE_KeySet, a COSE_Key and a detached policy signature.
/// Must never panic.
pub fn token_decode(data: &[u8]) {
    let _ = decode_unverified(data);
    if let Some(verifier) = token_fuzz_verifier() {
        let _ = verifier.verify(data, TOKEN_FUZZ_NOW);
    }
    let _ = KeySet::from_cose_key_set(data);
    let _ = crate::token::VerifyingKey::from_cose_key_bytes(data);
    // The same bytes as a detached policy signature by the fuzz key.
    if let Some(key) = token_fuzz_signing_key() {
        let _ = crate::token::policy_signature::verify_policy_signature(
            b"id = \"fuzz\"\n",
            data,
            &[key.verifying_key()],
        );
    }
}
