//! Producing tokens: the broker signs a [`Claims`] set with its [`SigningKey`].

use aws_lc_rs::rand::SecureRandom;
use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};

use super::claims::CTI_LEN;
use super::{Claims, SigningKey, TokenError};

/// Sign `claims` into a tagged COSE_Sign1 (tag 18): protected header
/// `{1: -7 (ES256), 4: kid}`, empty unprotected header, the claims set as
/// deterministic CBOR payload, and the ES256 signature over the RFC 9052
/// Sig_structure with empty external_aad.
pub fn mint(claims: &Claims, key: &SigningKey) -> Result<Vec<u8>, TokenError> {
    let payload = claims.to_cbor_bytes()?;
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(key.kid().into_bytes())
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .try_create_signature(b"", |tbs| key.sign(tbs))?
        .build()
        .to_tagged_vec()
        .map_err(|_| TokenError::Encode { what: "COSE_Sign1" })
}

/// A fresh 16-byte token id from `rng`.
pub fn new_cti(rng: &dyn SecureRandom) -> Result<Vec<u8>, TokenError> {
    let mut cti = vec![0u8; CTI_LEN];
    rng.fill(&mut cti).map_err(|_| TokenError::Crypto {
        operation: "random cti",
    })?;
    Ok(cti)
}
