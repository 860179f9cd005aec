//! TPM endorsement-key (EK) certificates: parsing (including the padding a
//! TPM leaves after the certificate in NV, and the TPM identity in the
//! critical SubjectAltName), chain building to a manufacturer trust anchor at
//! a caller-supplied time, and the binding of the certificate to the EK
//! public key the TPM reports.
//!
//! ```text
//! NV bytes ──parse_ek_certificate──▶ EkCertificate ──verify_ek_chain(store, now)──▶ VerifiedEkChain
//!                                         └──check_ek_public(TPM's EK public)
//! ```

mod certificate;
mod chain;
mod identity;
mod manufacturers;
mod store;

pub use chain::{
    verify_ek_chain, ChainCert, VerifiedEkChain, MAX_CHAIN_DEPTH, MAX_SIGNATURE_CHECKS,
};
pub use identity::{EkIdentity, EK_KEY_LABEL};
pub use manufacturers::BUNDLED_MANUFACTURER_CAS;
pub use store::TrustStore;

use crate::crypto::{HashAlg, PublicKey};
use certificate::{is_pem, trim_nv_padding, ParsedCert};

/// Why an EK certificate or its chain was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EkCertError {
    /// The PEM framing could not be decoded.
    #[error("PEM: {detail}")]
    PemMalformed { detail: String },
    /// A PEM block is not a CERTIFICATE.
    #[error("PEM block label is {label:?}, expected CERTIFICATE")]
    PemLabel { label: String },
    /// The input holds no certificate at all.
    #[error("no certificate in the input")]
    NoCertificate,
    /// A PEM input held several certificates where one EK certificate was expected.
    #[error("expected one EK certificate, found {count}")]
    MultipleCertificates { count: usize },
    /// The DER structure of `field` is invalid.
    #[error("DER {field}: {detail}")]
    Der { field: &'static str, detail: String },
    /// Bytes other than 0x00/0xff padding follow the certificate.
    #[error("{count} trailing bytes after the certificate are not 0x00/0xff padding")]
    TrailingData { count: usize },
    /// The subject key is of a type this module does not handle.
    #[error("certificate {subject}: unsupported public key algorithm {oid}")]
    UnsupportedPublicKey { subject: String, oid: String },
    /// A certificate is not valid yet at `now`.
    #[error("certificate {subject} is not valid before {not_before} (now {now})")]
    NotYetValid {
        subject: String,
        not_before: i64,
        now: i64,
    },
    /// A certificate has expired at `now`.
    #[error("certificate {subject} expired at {not_after} (now {now})")]
    Expired {
        subject: String,
        not_after: i64,
        now: i64,
    },
    /// No presented or stored certificate names `issuer` as its subject.
    #[error("no issuer certificate found for {issuer}")]
    NoIssuerFound { issuer: String },
    /// The signature on `subject` does not verify with its issuer's key.
    #[error("signature on certificate {subject} does not verify")]
    SignatureInvalid { subject: String },
    /// The signature algorithm (or its combination with the issuer key) is not supported.
    #[error("unsupported signature algorithm {oid}")]
    UnsupportedSignatureAlgorithm { oid: String },
    /// An issuer lacks basicConstraints CA:TRUE.
    #[error("issuer certificate {subject} is not a CA (basicConstraints)")]
    NotACa { subject: String },
    /// An issuer has keyUsage without keyCertSign.
    #[error("issuer certificate {subject} keyUsage lacks keyCertSign")]
    KeyUsageNoCertSign { subject: String },
    /// An issuer's pathLenConstraint is exceeded by the intermediates below it.
    #[error(
        "issuer certificate {subject} allows {path_len} intermediates below it, chain has {actual}"
    )]
    PathLenExceeded {
        subject: String,
        path_len: u32,
        actual: usize,
    },
    /// A certificate carries a critical extension this module does not process.
    #[error("certificate {subject} has unhandled critical extension {oid}")]
    UnhandledCriticalExtension { subject: String, oid: String },
    /// No trust anchor was reached within `max` issuers.
    #[error("no trust anchor within {max} issuers")]
    ChainTooLong { max: usize },
    /// Path building tried more candidate issuers than allowed.
    #[error("path search exceeded {max} signature checks")]
    SearchBudgetExhausted { max: usize },
    /// The certified key is not the EK the TPM reported.
    #[error("EK public key mismatch: certificate has {expected}, TPM reported {actual}")]
    EkPublicMismatch { expected: String, actual: String },
}

/// The shared PEM rule's refusals, in this module's terms.
impl From<crate::pem::PemError> for EkCertError {
    fn from(e: crate::pem::PemError) -> Self {
        use crate::pem::PemError;
        match e {
            PemError::Label { actual, .. } => EkCertError::PemLabel { label: actual },
            PemError::Malformed { source } => EkCertError::PemMalformed {
                detail: source.to_string(),
            },
            PemError::Empty { .. } | PemError::NotPem { .. } => EkCertError::NoCertificate,
        }
    }
}

/// A parsed EK certificate. Its chain is not verified yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EkCertificate {
    /// The certificate DER, with NV padding trimmed.
    #[serde(serialize_with = "hex_bytes")]
    pub der: Vec<u8>,
    /// The endorsement key.
    #[serde(skip)]
    pub public_key: PublicKey,
    /// Serial number, big-endian hex as encoded.
    pub serial_hex: String,
    /// Issuer name (RFC 4514-like text).
    pub issuer: String,
    /// Subject name; usually empty for EK certificates.
    pub subject: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// TPM manufacturer (SAN attribute 2.23.133.2.1), e.g. `id:53544D20`.
    pub tpm_manufacturer: Option<String>,
    /// TPM model (SAN attribute 2.23.133.2.2).
    pub tpm_model: Option<String>,
    /// TPM firmware version (SAN attribute 2.23.133.2.3).
    pub tpm_version: Option<String>,
    /// Number of 0x00/0xff padding bytes found after the certificate (NV read).
    pub trailing_padding: usize,
    /// The decoded certificate the chain builder works on.
    #[serde(skip)]
    pub(crate) parsed: ParsedCert,
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Parse an EK certificate given as PEM (exactly one CERTIFICATE block) or
/// as DER. DER input may carry padding after the certificate, as read from
/// TPM NV: bytes that are all 0x00 or 0xff are trimmed and counted in
/// `trailing_padding`; any other trailing byte is an error.
pub fn parse_ek_certificate(bytes: &[u8]) -> Result<EkCertificate, EkCertError> {
    let (der, trailing_padding) = if is_pem(bytes) {
        let mut certs = crate::pem::certificates(bytes)?;
        match (certs.pop(), certs.len()) {
            (Some(der), 0) => (der, 0),
            (None, _) => return Err(EkCertError::NoCertificate),
            (Some(_), n) => return Err(EkCertError::MultipleCertificates { count: n + 1 }),
        }
    } else {
        let (cert, padding) = trim_nv_padding(bytes)?;
        (cert.to_vec(), padding)
    };
    let parsed = ParsedCert::from_der(&der)?;
    let public_key =
        parsed
            .public_key
            .clone()
            .map_err(|oid| EkCertError::UnsupportedPublicKey {
                subject: parsed.display_name(),
                oid,
            })?;
    Ok(EkCertificate {
        der,
        public_key,
        serial_hex: parsed.serial_hex.clone(),
        issuer: parsed.issuer.clone(),
        subject: parsed.subject.clone(),
        not_before: parsed.not_before,
        not_after: parsed.not_after,
        tpm_manufacturer: parsed.tpm.manufacturer.clone(),
        tpm_model: parsed.tpm.model.clone(),
        tpm_version: parsed.tpm.version.clone(),
        trailing_padding,
        parsed,
    })
}

/// Check that the certificate certifies `ek_public`, the EK the TPM reported
/// (e.g. from `TPM2_ReadPublic` on the EK handle).
pub fn check_ek_public(ek: &EkCertificate, ek_public: &PublicKey) -> Result<(), EkCertError> {
    if same_key(&ek.public_key, ek_public) {
        Ok(())
    } else {
        Err(EkCertError::EkPublicMismatch {
            expected: key_fingerprint(&ek.public_key),
            actual: key_fingerprint(ek_public),
        })
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    match (a, b) {
        (PublicKey::Rsa { n: n1, e: e1 }, PublicKey::Rsa { n: n2, e: e2 }) => {
            strip_zeros(n1) == strip_zeros(n2) && strip_zeros(e1) == strip_zeros(e2)
        }
        (
            PublicKey::Ec {
                curve: c1,
                point: p1,
            },
            PublicKey::Ec {
                curve: c2,
                point: p2,
            },
        ) => c1 == c2 && p1 == p2,
        _ => false,
    }
}

/// A short, stable description of a key for mismatch errors:
/// `rsa-2048:<first 16 hex of SHA-256(n)>` or `ec-P384:<… of SHA-256(point)>`.
pub fn key_fingerprint(key: &PublicKey) -> String {
    let (kind, material) = match key {
        PublicKey::Rsa { n, .. } => (format!("rsa-{}", key.rsa_bits()), strip_zeros(n)),
        PublicKey::Ec { curve, point } => (format!("ec-{curve:?}"), point.as_slice()),
    };
    let digest = HashAlg::Sha256.digest(material);
    format!(
        "{kind}:{}",
        hex::encode(digest.get(..8).unwrap_or_default())
    )
}
