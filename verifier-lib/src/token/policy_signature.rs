//! Detached signatures of policy documents: a tagged COSE_Sign1 whose
//! protected header is `{1: -7 (ES256), 3: "application/writ-policy+toml",
//! 4: signer kid}` (the kid is the RFC 7638 thumbprint of the operator's
//! P-256 key, as for token keys), whose payload is nil (detached: the
//! signed bytes are the policy file's exact text) and whose unprotected
//! header is empty. The content type keeps a policy signature from being
//! taken for a token or a key endorsement by the same key.

use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};

use super::envelope;
use super::verify::{check_headers, kid_of};
use super::{SigningKey, TokenError, VerifyingKey};

/// Content type (COSE header 3) of a policy signature.
pub const POLICY_CONTENT_TYPE: &str = "application/writ-policy+toml";

/// Sign the policy document `text` (its exact bytes) with `key`.
pub fn sign_policy(text: &[u8], key: &SigningKey) -> Result<Vec<u8>, TokenError> {
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .content_type(POLICY_CONTENT_TYPE.to_owned())
        .key_id(key.kid().into_bytes())
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .try_create_detached_signature(text, b"", |tbs| key.sign(tbs))?
        .build()
        .to_tagged_vec()
        .map_err(|_| TokenError::Encode {
            what: "policy signature",
        })
}

/// Verify `signature` over the policy document `text` by one of `signers`
/// (the operator keys the broker trusts): structure, headers (ES256, the
/// policy content type, a known `kid`), a detached payload, and the
/// signature. Returns the signer's kid.
pub fn verify_policy_signature(
    text: &[u8],
    signature: &[u8],
    signers: &[VerifyingKey],
) -> Result<String, TokenError> {
    let sign1 = envelope::parse(signature)?;
    check_headers(&sign1)?;
    match &sign1.protected.content_type {
        Some(coset::RegisteredLabel::Text(t)) if t == POLICY_CONTENT_TYPE => {}
        other => {
            return Err(TokenError::ContentTypeMismatch {
                expected: POLICY_CONTENT_TYPE,
                actual: other.as_ref().map(|c| format!("{c:?}")),
            })
        }
    }
    if sign1.payload.is_some() {
        return Err(TokenError::Cose {
            structure: "policy signature",
            reason: "the payload must be detached (nil): the signed bytes are the policy file"
                .into(),
        });
    }
    let kid = kid_of(&sign1)?;
    let signer = signers
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| TokenError::UnknownKey { kid: kid.clone() })?;
    signer.verify(
        &envelope::sig_structure(sign1.protected_bytes, text),
        sign1.signature,
    )?;
    Ok(kid)
}
