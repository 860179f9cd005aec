//! Quote verification: signature, nonce, PCR selection and `pcrDigest`.

use serde::Serialize;

use super::{
    hex_bytes, AkPublic, Attest, Attested, ClockInfo, PcrSelection, PcrValues, QuoteError, SigAlg,
    Signature, TpmError, ST_ATTEST_QUOTE, TPM_GENERATED_VALUE,
};
use crate::crypto::{self, HashAlg, PublicKey, SignatureError};

/// A quote whose signature, nonce and PCR digest have been verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedQuote {
    pub attest: Attest,
    /// The quoted PCR values (only the selected ones), checked against `pcrDigest`.
    pub pcrs: PcrValues,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    #[serde(with = "hex_bytes")]
    pub qualified_signer: Vec<u8>,
    /// The nonce found in (and checked against) `extraData`.
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    /// The signature verified, but under a weak hash (SHA-1) that only
    /// [`QuoteOptions::dangerous_accept_sha1_signatures`] accepts: whoever
    /// relies on this quote must say so (an appraisal records it).
    pub accepted_weak_hash: Option<HashAlg>,
}

/// What a quote verification accepts beyond the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuoteOptions {
    /// Accept signatures made with SHA-1 (RSASSA-SHA1, still produced by some
    /// firmware and by Windows hosts). A SHA-1 signature can be forged by
    /// a chosen-prefix collision; off by default. When set, a verified
    /// SHA-1 quote reports [`VerifiedQuote::accepted_weak_hash`].
    pub dangerous_accept_sha1_signatures: bool,
}

/// Whether signatures under `hash` are weak (refused unless a caller
/// accepts them explicitly).
pub fn is_weak_signature_hash(hash: HashAlg) -> bool {
    hash == HashAlg::Sha1
}

/// Verify a TPM quote.
///
/// `attest` is a raw `TPMS_ATTEST` or a `TPM2B_ATTEST`; `signature` a
/// `TPMT_SIGNATURE`. Checks, in order: both parse; magic; type is a quote;
/// the signature scheme fits the AK (key type, curve, the AK's own scheme);
/// the signature verifies over the `TPMS_ATTEST` bytes; `extraData` equals
/// `expected_nonce`; the quoted selection covers `required`; every quoted
/// PCR has a value of the bank's digest length in `pcr_values`; and the
/// signature hash over those values in selection order equals `pcrDigest`.
///
/// The signature and nonce checks do not depend on `required`: an empty
/// selection still rejects forged or replayed quotes.
pub fn verify_quote(
    attest: &[u8],
    signature: &[u8],
    ak: &AkPublic,
    expected_nonce: &[u8],
    pcr_values: &PcrValues,
    required: &PcrSelection,
) -> Result<VerifiedQuote, QuoteError> {
    let parsed = Attest::parse(attest)?;
    let signature = Signature::parse(signature)?;
    verify_parsed(
        parsed,
        &signature,
        ak,
        expected_nonce,
        pcr_values,
        required,
        QuoteOptions::default(),
    )
}

/// [`verify_quote`] for a signature that is not a `TPMT_SIGNATURE`, such as
/// a raw RSA signature built with [`Signature::from_raw_rsa_pkcs1`].
pub fn verify_quote_with_signature(
    attest: &[u8],
    signature: &Signature,
    ak: &AkPublic,
    expected_nonce: &[u8],
    pcr_values: &PcrValues,
    required: &PcrSelection,
) -> Result<VerifiedQuote, QuoteError> {
    let parsed = Attest::parse(attest)?;
    verify_parsed(
        parsed,
        signature,
        ak,
        expected_nonce,
        pcr_values,
        required,
        QuoteOptions::default(),
    )
}

/// [`verify_quote_with_signature`] with [`QuoteOptions`]: a SHA-1 signature
/// that verifies is [`QuoteError::WeakSignatureHash`] unless the options
/// accept it.
pub fn verify_quote_with_options(
    attest: &[u8],
    signature: &Signature,
    ak: &AkPublic,
    expected_nonce: &[u8],
    pcr_values: &PcrValues,
    required: &PcrSelection,
    options: QuoteOptions,
) -> Result<VerifiedQuote, QuoteError> {
    let parsed = Attest::parse(attest)?;
    verify_parsed(
        parsed,
        signature,
        ak,
        expected_nonce,
        pcr_values,
        required,
        options,
    )
}

fn verify_parsed(
    attest: Attest,
    signature: &Signature,
    ak: &AkPublic,
    expected_nonce: &[u8],
    pcr_values: &PcrValues,
    required: &PcrSelection,
    options: QuoteOptions,
) -> Result<VerifiedQuote, QuoteError> {
    if attest.magic != TPM_GENERATED_VALUE {
        return Err(TpmError::BadMagic {
            expected: TPM_GENERATED_VALUE,
            actual: attest.magic,
        }
        .into());
    }
    let Attested::Quote {
        pcr_select,
        pcr_digest,
    } = &attest.attested
    else {
        return Err(QuoteError::WrongType {
            expected: ST_ATTEST_QUOTE,
            actual: attest.attest_type,
        });
    };

    let accepted_weak_hash = verify_signature(&attest.marshalled, signature, ak, options)?;

    if !crypto::ct_eq(&attest.extra_data, expected_nonce) {
        return Err(QuoteError::NonceMismatch {
            expected: hex::encode(expected_nonce),
            actual: hex::encode(&attest.extra_data),
        });
    }

    if !pcr_select.covers(required) {
        return Err(QuoteError::SelectionDoesNotCover {
            required: required.clone(),
            quoted: pcr_select.clone(),
        });
    }

    let mut quoted = PcrValues::default();
    let mut parts: Vec<&[u8]> = Vec::new();
    for (bank, pcr) in pcr_select.iter() {
        let value = pcr_values
            .value(bank, pcr)
            .ok_or(QuoteError::MissingPcrValue { bank, pcr })?;
        if value.len() != bank.output_len() {
            return Err(QuoteError::PcrValueLength {
                bank,
                pcr,
                expected: bank.output_len(),
                actual: value.len(),
            });
        }
        parts.push(value);
        quoted.insert(bank, pcr, value.to_vec());
    }
    let computed = signature.hash.digest_parts(parts);
    if !crypto::ct_eq(&computed, pcr_digest) {
        return Err(QuoteError::PcrDigestMismatch {
            expected: hex::encode(pcr_digest),
            actual: hex::encode(computed),
        });
    }

    Ok(VerifiedQuote {
        pcrs: quoted,
        clock_info: attest.clock_info,
        firmware_version: attest.firmware_version,
        qualified_signer: attest.qualified_signer.clone(),
        nonce: attest.extra_data.clone(),
        accepted_weak_hash,
        attest,
    })
}

/// Check the signature's scheme against the AK, then verify it over
/// `message`. A weak hash (SHA-1) is refused before any verification unless
/// `options` accept it; `Ok(Some(hash))`: verified under an accepted weak
/// hash.
pub(super) fn verify_signature(
    message: &[u8],
    signature: &Signature,
    ak: &AkPublic,
    options: QuoteOptions,
) -> Result<Option<HashAlg>, QuoteError> {
    let sig_bytes = checked_signature_bytes(signature, ak)?;
    let scheme = signature.sig_scheme();
    let weak = is_weak_signature_hash(signature.hash);
    if weak && !options.dangerous_accept_sha1_signatures {
        return Err(QuoteError::WeakSignatureHash { scheme });
    }
    crypto::verify(ak.key(), scheme, message, &sig_bytes).map_err(|e| match e {
        SignatureError::Invalid => QuoteError::SignatureInvalid,
        SignatureError::Unsupported { scheme } => QuoteError::UnsupportedAlgorithm { scheme },
    })?;
    Ok(weak.then_some(signature.hash))
}

/// The signature's bytes in the form the AK verifies, once its scheme was
/// checked against the AK: its key type, and the scheme the AK's public
/// area fixes, if any.
fn checked_signature_bytes(signature: &Signature, ak: &AkPublic) -> Result<Vec<u8>, QuoteError> {
    let key = ak.key();
    let sig_bytes =
        match (key, signature.scheme) {
            (PublicKey::Ec { curve, .. }, SigAlg::EcDsa) => signature
                .ecdsa_for_curve(*curve)
                .map_err(|(field, actual)| QuoteError::EcdsaComponentTooLarge {
                    field,
                    max: curve.field_len(),
                    actual,
                })?,
            (PublicKey::Rsa { .. }, SigAlg::RsaSsa | SigAlg::RsaPss) => signature.bytes.clone(),
            _ => {
                return Err(QuoteError::SignatureSchemeMismatch {
                    signature_scheme: signature.scheme,
                    signature_hash: signature.hash,
                    key: describe_key(key),
                })
            }
        };
    if let AkPublic::Tpm(public) = ak {
        if let Some((ak_scheme, ak_hash)) = public.scheme {
            let hash_ok = ak_hash.is_none_or(|h| h == signature.hash);
            if ak_scheme != signature.scheme.tpm_alg_id() || !hash_ok {
                return Err(QuoteError::AkSchemeMismatch {
                    signature_scheme: signature.scheme,
                    signature_hash: signature.hash,
                    ak_scheme,
                    ak_hash,
                });
            }
        }
    }
    Ok(sig_bytes)
}

fn describe_key(key: &PublicKey) -> String {
    match key {
        PublicKey::Rsa { .. } => format!("rsa-{}", key.rsa_bits()),
        PublicKey::Ec { curve, .. } => format!("ecc-{curve:?}"),
    }
}

/// Authenticate a quote without PCR values: structure, magic, type,
/// signature by the AK and, when given, the nonce. The PCR digest is NOT
/// checked, so the PCR values the quote commits to are unknown to the
/// caller; this is for offline inspection (`writ-broker evidence quote`
/// without `--pcrs`), never for an appraisal. Returns the attest and, as
/// in [`VerifiedQuote::accepted_weak_hash`], the weak hash `options`
/// accepted.
pub fn verify_quote_signature_only(
    attest: &[u8],
    signature: &Signature,
    ak: &AkPublic,
    expected_nonce: Option<&[u8]>,
    options: QuoteOptions,
) -> Result<(Attest, Option<HashAlg>), QuoteError> {
    let attest = Attest::parse(attest)?;
    if attest.magic != TPM_GENERATED_VALUE {
        return Err(TpmError::BadMagic {
            expected: TPM_GENERATED_VALUE,
            actual: attest.magic,
        }
        .into());
    }
    if !matches!(attest.attested, Attested::Quote { .. }) {
        return Err(QuoteError::WrongType {
            expected: ST_ATTEST_QUOTE,
            actual: attest.attest_type,
        });
    }
    let accepted_weak_hash = verify_signature(&attest.marshalled, signature, ak, options)?;
    if let Some(nonce) = expected_nonce {
        if !crypto::ct_eq(&attest.extra_data, nonce) {
            return Err(QuoteError::NonceMismatch {
                expected: hex::encode(nonce),
                actual: hex::encode(&attest.extra_data),
            });
        }
    }
    Ok((attest, accepted_weak_hash))
}
