//! Request-signing keys: a TPM-resident P-256 signing key that the host's
//! AK certified with TPM2_Certify, and the signatures it makes over token
//! requests between attestations.
//!
//! [`verify_certify`] checks, in order: the key's public area parses and
//! has request-key attributes (`sign`, `fixedTPM`, `fixedParent`,
//! `sensitiveDataOrigin`; not `decrypt`, not `restricted`) and is ECC P-256
//! with an ECDSA-SHA256 or NULL scheme; the attest parses, has the TPM magic
//! and type `TPM_ST_ATTEST_CERTIFY`; the AK's signature verifies over it;
//! `extraData` is the expected nonce; and the certified name is the key's
//! name. Only then is the key usable by [`verify_request_signature`].

use serde::Serialize;

use super::quote::{verify_signature, QuoteOptions};
use super::{
    hex_bytes, AkPublic, Attest, Attested, ClockInfo, Public, QuoteError, Signature, TpmError,
    ST_ATTEST_CERTIFY, TPM_GENERATED_VALUE,
};
use crate::crypto::{self, Curve, HashAlg, PublicKey};

/// `TPM_ALG_ECDSA`.
const TPM_ALG_ECDSA: u16 = 0x0018;

/// A request-signing key the AK certified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertifiedKey {
    /// The key's name (`nameAlg` ‖ H(TPMT_PUBLIC)), as certified.
    #[serde(with = "hex_bytes")]
    pub name: Vec<u8>,
    /// The TPM clock when it was certified.
    pub clock_info: ClockInfo,
    #[serde(skip)]
    pub public: Public,
}

/// Why a certification or a request signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertifyError {
    /// The key's public area does not parse, or has the wrong attributes.
    #[error("request key: {0}")]
    Key(#[source] TpmError),
    /// The key is not an ECC P-256 key with an ECDSA-SHA256 (or NULL) scheme.
    #[error("request key: expected ecc-P256 with scheme ecdsa-sha256, found {actual}")]
    UnsupportedKey { actual: String },
    /// The certification (attest or AK signature) failed.
    #[error("certification: {0}")]
    Certification(#[source] QuoteError),
    /// `TPMS_ATTEST.type` is not `TPM_ST_ATTEST_CERTIFY`.
    #[error("attest type: expected {expected:#06x}, found {actual:#06x}")]
    WrongType { expected: u16, actual: u16 },
    /// `extraData` differs from the expected nonce (both hex).
    #[error("extraData: expected nonce {expected}, found {actual}")]
    NonceMismatch { expected: String, actual: String },
    /// The AK certified another object than the presented key (both hex).
    #[error("certified name: expected {expected}, found {actual}")]
    NameMismatch { expected: String, actual: String },
    /// A request signature does not parse or does not verify with the key.
    #[error("request signature: {0}")]
    RequestSignature(#[source] QuoteError),
}

/// Verify that the AK `ak` certified the request-signing key `key_public`
/// (`TPMT_PUBLIC` or `TPM2B_PUBLIC`) with `expected_nonce` as qualifying
/// data. `attest` is the `TPMS_ATTEST` (or `TPM2B_ATTEST`) and `signature`
/// the `TPMT_SIGNATURE` that TPM2_Certify returned.
pub fn verify_certify(
    attest: &[u8],
    signature: &[u8],
    ak: &AkPublic,
    key_public: &[u8],
    expected_nonce: &[u8],
) -> Result<CertifiedKey, CertifyError> {
    let public = Public::parse(key_public).map_err(CertifyError::Key)?;
    public
        .check_request_key_attributes()
        .map_err(CertifyError::Key)?;
    let p256 = matches!(
        public.key,
        PublicKey::Ec {
            curve: Curve::P256,
            ..
        }
    );
    let scheme_ok = match public.scheme {
        None => true,
        Some((alg, hash)) => alg == TPM_ALG_ECDSA && hash.is_none_or(|h| h == HashAlg::Sha256),
    };
    if !p256 || !scheme_ok {
        return Err(CertifyError::UnsupportedKey {
            actual: describe(&public),
        });
    }

    let parsed =
        Attest::parse(attest).map_err(|e| CertifyError::Certification(QuoteError::Parse(e)))?;
    let signature = Signature::parse(signature)
        .map_err(|e| CertifyError::Certification(QuoteError::Parse(e)))?;
    if parsed.magic != TPM_GENERATED_VALUE {
        return Err(CertifyError::Certification(QuoteError::Parse(
            TpmError::BadMagic {
                expected: TPM_GENERATED_VALUE,
                actual: parsed.magic,
            },
        )));
    }
    let Attested::Certify { name, .. } = &parsed.attested else {
        return Err(CertifyError::WrongType {
            expected: ST_ATTEST_CERTIFY,
            actual: parsed.attest_type,
        });
    };
    verify_signature(&parsed.marshalled, &signature, ak, QuoteOptions::default())
        .map_err(CertifyError::Certification)?;
    if !crypto::ct_eq(&parsed.extra_data, expected_nonce) {
        return Err(CertifyError::NonceMismatch {
            expected: hex::encode(expected_nonce),
            actual: hex::encode(&parsed.extra_data),
        });
    }
    let key_name = public.name();
    if !crypto::ct_eq(name, &key_name) {
        return Err(CertifyError::NameMismatch {
            expected: hex::encode(&key_name),
            actual: hex::encode(name),
        });
    }
    Ok(CertifiedKey {
        name: key_name,
        clock_info: parsed.clock_info,
        public,
    })
}

/// Verify a `TPMT_SIGNATURE` by a request key over `message` (the TPM
/// signed SHA-256 of `message`). `key` is the public area of a key that
/// [`verify_certify`] accepted ([`CertifiedKey::public`]).
pub fn verify_request_signature(
    key: &Public,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CertifyError> {
    let signature = Signature::parse(signature)
        .map_err(|e| CertifyError::RequestSignature(QuoteError::Parse(e)))?;
    if signature.hash != HashAlg::Sha256 {
        return Err(CertifyError::RequestSignature(
            QuoteError::UnsupportedAlgorithm {
                scheme: signature.sig_scheme(),
            },
        ));
    }
    verify_signature(
        message,
        &signature,
        &AkPublic::Tpm(key.clone()),
        QuoteOptions::default(),
    )
    .map(|_| ())
    .map_err(CertifyError::RequestSignature)
}

fn describe(p: &Public) -> String {
    let key = match &p.key {
        PublicKey::Rsa { .. } => format!("rsa-{}", p.key.rsa_bits()),
        PublicKey::Ec { curve, .. } => format!("ecc-{curve:?}"),
    };
    match p.scheme {
        None => format!("{key} with scheme null"),
        Some((alg, hash)) => format!("{key} with scheme {alg:#06x}/{hash:?}"),
    }
}
