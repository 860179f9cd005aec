//! TPM 2.0 structure parsing and quote verification.
//!
//! Everything here is hand-written on top of [`crate::wire::Reader`]: every
//! structure is parsed into a checked type (rejecting trailing bytes and
//! unknown algorithms) before any cryptography runs.
//!
//! - [`Attest`]: `TPMS_ATTEST` / `TPM2B_ATTEST`.
//! - [`Signature`]: `TPMT_SIGNATURE` (or a raw RSA signature with a stated scheme).
//! - [`Public`]: `TPMT_PUBLIC` / `TPM2B_PUBLIC`, its name and AK attribute checks.
//! - [`check_ek_template`]: an EK public area is a TCG default EK template.
//! - [`AkPublic`]: an attestation key from a TPM public area or an SPKI (PEM/DER).
//! - [`PcrSelection`], [`PcrValues`]: `TPML_PCR_SELECTION` and PCR values per bank.
//! - [`verify_quote`]: signature, nonce, selection and `pcrDigest` checks.
//! - [`verify_certify`]: a request-signing key certified by the AK
//!   (TPM2_Certify), and [`verify_request_signature`] for what it signs.

mod attest;
mod certify;
mod ek_template;
mod pcr;
mod pcr_file;
mod public;
mod quote;
mod signature;

pub use self::attest::{
    Attest, Attested, ClockInfo, ST_ATTEST_CERTIFY, ST_ATTEST_QUOTE, TPM_GENERATED_VALUE,
};
pub use self::certify::{verify_certify, verify_request_signature, CertifiedKey, CertifyError};
pub use self::ek_template::{
    check_ek_template, EkTemplate, EkTemplateError, EkTemplateKey, EK_TEMPLATES,
};
pub use self::pcr::{PcrBank, PcrSelection, PcrValues};
pub use self::public::{AkPublic, Public, SymDef, TPM_ALG_ECC, TPM_ALG_RSA};
pub use self::quote::{
    is_weak_signature_hash, verify_quote, verify_quote_signature_only, verify_quote_with_options,
    verify_quote_with_signature, QuoteOptions, VerifiedQuote,
};
pub use self::signature::{SigAlg, Signature};

use crate::crypto::{HashAlg, SigScheme};
use crate::wire::WireError;

/// `TPM_ALG_NULL`.
pub const TPM_ALG_NULL: u16 = 0x0010;

/// Why a TPM structure could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// Truncation, a size limit or trailing bytes.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// `TPMS_ATTEST.magic` is not `TPM_GENERATED_VALUE`.
    #[error("magic: expected {expected:#010x}, found {actual:#010x}")]
    BadMagic { expected: u32, actual: u32 },
    /// An algorithm identifier Writ does not support in this field.
    #[error("{field}: unsupported algorithm {id:#06x}")]
    UnsupportedAlgorithm { field: &'static str, id: u16 },
    /// A field holds a value the specification does not allow.
    #[error("{field}: invalid value {value:#x}")]
    InvalidValue { field: &'static str, value: u64 },
    /// A key's size field disagrees with the key material.
    #[error("{field}: expected {expected} bytes, found {actual}")]
    KeySizeMismatch {
        field: &'static str,
        expected: usize,
        actual: usize,
    },
    /// An ECC point does not fit the curve.
    #[error(
        "unique.ecc: point coordinates of {x_len} and {y_len} bytes do not fit curve {curve:?}"
    )]
    InvalidEccPoint {
        curve: crate::crypto::Curve,
        x_len: usize,
        y_len: usize,
    },
    /// An ECDSA `r` or `s` is longer than any supported field.
    #[error("signature.{field}: {actual} bytes exceeds {max}")]
    EcdsaComponentTooLarge {
        field: &'static str,
        max: usize,
        actual: usize,
    },
    /// A SubjectPublicKeyInfo could not be parsed.
    #[error("subjectPublicKeyInfo: {reason}")]
    InvalidSpki { reason: String },
    /// PEM that is not exactly one `PUBLIC KEY` block.
    #[error("pem: expected one {expected} block, found {actual}")]
    UnexpectedPem {
        expected: &'static str,
        actual: String,
    },
    /// An AK public area has the wrong object attributes.
    #[error(
        "objectAttributes {attributes:#010x}: missing {missing:?}, forbidden set {forbidden:?}"
    )]
    AkAttributes {
        attributes: u32,
        missing: Vec<&'static str>,
        forbidden: Vec<&'static str>,
    },
    /// PCR values JSON is not `{"<bank>": {"<pcr>": "<hex>"}}`.
    #[error("pcr values json at line {line} column {column}: {message}")]
    PcrValuesJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// A tpm2-tools PCR file of impossible length.
    #[error("tpm2-tools PCR file: expected {expected}, found {actual} bytes")]
    PcrFileLength {
        expected: &'static str,
        actual: usize,
    },
    /// A tpm2-tools PCR file whose digest-list count disagrees with its length.
    #[error("tpm2-tools PCR file: {expected} digest lists by its length, {actual} stated")]
    PcrFileDigestLists { expected: usize, actual: usize },
    /// A tpm2-tools PCR file with a digest count other than its selection's.
    #[error("tpm2-tools PCR file: {expected} PCRs selected, {actual} digests")]
    PcrFileDigestCount { expected: usize, actual: usize },
    /// A tpm2-tools PCR file digest of the wrong length for its bank.
    #[error("tpm2-tools PCR file: {bank} PCR {pcr} has {actual} bytes, expected {expected}")]
    PcrFileDigestSize {
        bank: HashAlg,
        pcr: u8,
        expected: usize,
        actual: usize,
    },
}

/// Why a quote was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The attest structure, signature or AK could not be parsed.
    #[error("parse: {0}")]
    Parse(#[from] TpmError),
    /// `TPMS_ATTEST.type` is not `TPM_ST_ATTEST_QUOTE`.
    #[error("attest type: expected {expected:#06x}, found {actual:#06x}")]
    WrongType { expected: u16, actual: u16 },
    /// The signature's scheme cannot have been made by this AK.
    #[error(
        "signature scheme {signature_scheme:?}/{signature_hash} does not match the AK ({key})"
    )]
    SignatureSchemeMismatch {
        signature_scheme: SigAlg,
        signature_hash: HashAlg,
        key: String,
    },
    /// The AK's public area fixes a scheme the signature does not use.
    #[error("signature scheme {signature_scheme:?}/{signature_hash} differs from the AK scheme {ak_scheme:#06x}/{ak_hash:?}")]
    AkSchemeMismatch {
        signature_scheme: SigAlg,
        signature_hash: HashAlg,
        ak_scheme: u16,
        ak_hash: Option<HashAlg>,
    },
    /// The scheme, hash and key combination is not supported.
    #[error("unsupported signature algorithm {scheme:?}")]
    UnsupportedAlgorithm { scheme: SigScheme },
    /// The signature uses a weak hash (SHA-1), refused unless the caller
    /// accepts it (a policy group's `dangerous_accept_sha1_signatures`).
    #[error("signature hash of {scheme:?} is weak (SHA-1): refused unless the policy sets dangerous_accept_sha1_signatures")]
    WeakSignatureHash { scheme: SigScheme },
    /// An ECDSA `r` or `s` is larger than the AK curve's field.
    #[error("signature.{field}: {actual} significant bytes exceeds the curve field size {max}")]
    EcdsaComponentTooLarge {
        field: &'static str,
        max: usize,
        actual: usize,
    },
    /// The signature does not verify over the attest bytes with the AK.
    #[error("signature does not verify with the AK")]
    SignatureInvalid,
    /// `extraData` differs from the expected nonce (both hex).
    #[error("extraData: expected nonce {expected}, found {actual}")]
    NonceMismatch { expected: String, actual: String },
    /// The quote does not select every PCR the policy requires.
    #[error("pcrSelect: quoted {quoted} does not cover required {required}")]
    SelectionDoesNotCover {
        required: PcrSelection,
        quoted: PcrSelection,
    },
    /// A quoted PCR has no value in the supplied PCR values.
    #[error("pcr values: no value for {bank} PCR {pcr}")]
    MissingPcrValue { bank: HashAlg, pcr: u8 },
    /// A supplied PCR value has the wrong length for its bank.
    #[error("pcr values: {bank} PCR {pcr} has {actual} bytes, expected {expected}")]
    PcrValueLength {
        bank: HashAlg,
        pcr: u8,
        expected: usize,
        actual: usize,
    },
    /// The hash of the supplied PCR values differs from the signed `pcrDigest` (hex).
    #[error("pcrDigest: quote states {expected}, supplied PCR values hash to {actual}")]
    PcrDigestMismatch { expected: String, actual: String },
}

/// Serde helper: byte vectors as lower-case hex strings.
pub(crate) mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}
