//! The one error type of the `snp` module.

use super::{CertRole, Product, SignerKind, TcbComponent};

/// Why an SEV-SNP report, its certificate chain or its CRL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// The report is not exactly 1184 bytes.
    #[error("attestation report length: expected {expected} bytes, got {actual}")]
    InvalidLength { expected: usize, actual: usize },
    /// The report version is not one this verifier understands (2, 3 or 5).
    #[error("attestation report version {actual} is not supported (2, 3 and 5 are)")]
    UnsupportedVersion { actual: u32 },
    /// A field the ABI reserves as zero is not zero.
    #[error("reserved field at report offset {offset:#x} is not zero")]
    ReservedNonZero { offset: usize },
    /// Guest policy bit 17 is reserved and must be one.
    #[error("guest policy {policy:#x}: reserved bit 17 must be set")]
    PolicyReservedBitClear { policy: u64 },
    /// SIGNATURE_ALGO is not 1 (ECDSA P-384 with SHA-384).
    #[error("signature_algo {actual} is not supported (expected 1 = ECDSA P-384 SHA-384)")]
    UnsupportedSignatureAlgorithm { actual: u32 },
    /// SIGNING_KEY in the key-info field is neither VCEK (0) nor VLEK (1).
    #[error("signing_key {actual} in the key-info field is neither VCEK (0) nor VLEK (1)")]
    UnsupportedSigningKey { actual: u8 },
    /// An ECDSA R or S component does not fit in 48 bytes.
    #[error("signature component {component} has non-zero bytes beyond 48")]
    SignatureComponentTooLarge { component: &'static str },
    /// The report's signature does not verify with the VCEK/VLEK key.
    #[error("report signature does not verify with the {signer:?} public key")]
    ReportSignatureInvalid { signer: SignerKind },
    /// The report's CPUID family/model is not a known SEV-SNP product.
    #[error("CPUID family {family:#x} model {model:#x} is not a known SEV-SNP product")]
    UnknownCpuid { family: u8, model: u8 },
    /// The certificate product name is not Milan, Genoa or Turin.
    #[error("certificate product name {actual:?} is not a known SEV-SNP product")]
    UnknownProductName { actual: String },
    /// Products named by the report, the certificate and the chain disagree.
    #[error("product mismatch: the chain is for {expected:?} but {source_name} says {actual:?}")]
    ProductMismatch {
        expected: Product,
        actual: Product,
        source_name: &'static str,
    },
    /// The report's SIGNING_KEY and the kind of certificate disagree.
    #[error(
        "signer mismatch: the report says {report:?}, the certificate chain is for {certificate:?}"
    )]
    SignerMismatch {
        report: SignerKind,
        certificate: SignerKind,
    },
    /// A certificate does not parse as DER X.509.
    #[error("{role:?} certificate does not parse")]
    CertificateParse { role: CertRole },
    /// A certificate uses a signature algorithm other than RSASSA-PSS SHA-384 salt 48.
    #[error("{role:?} certificate signature algorithm is not RSASSA-PSS with SHA-384, MGF1-SHA-384 and salt 48")]
    UnsupportedCertificateAlgorithm { role: CertRole },
    /// A certificate key is not the kind its role requires.
    #[error("{role:?} certificate public key: expected {expected}")]
    UnsupportedKey {
        role: CertRole,
        expected: &'static str,
    },
    /// A certificate's signature does not verify with its issuer's key.
    #[error("{role:?} certificate signature does not verify with its issuer's key")]
    CertificateSignatureInvalid { role: CertRole },
    /// A certificate's issuer name does not equal its issuer's subject name.
    #[error("{role:?} certificate issuer does not match the subject of the certificate above it")]
    IssuerMismatch { role: CertRole },
    /// A certificate is not valid at the verification time.
    #[error("{role:?} certificate is not valid at {now} (valid {not_before}..{not_after})")]
    CertificateNotValid {
        role: CertRole,
        not_before: i64,
        not_after: i64,
        now: i64,
    },
    /// A CA certificate lacks basicConstraints CA=true.
    #[error("{role:?} certificate is not a CA certificate")]
    NotCa { role: CertRole },
    /// No pinned or explicitly supplied root issued this chain.
    #[error("the {role:?} certificate does not chain to a trusted ARK")]
    UntrustedRoot { role: CertRole },
    /// No ASK/ASVK was given and none is bundled for this issuer.
    #[error("no ASK/ASVK certificate given and none bundled for the VCEK/VLEK issuer")]
    MissingIntermediate,
    /// A required AMD certificate extension is missing.
    #[error("certificate extension {oid} is missing")]
    MissingExtension { oid: &'static str },
    /// An AMD certificate extension is malformed.
    #[error("certificate extension {oid} is malformed")]
    InvalidExtension { oid: String },
    /// The VCEK hwID does not equal the report's CHIP_ID.
    #[error("VCEK hwID {expected} does not match report chip_id {actual}")]
    ChipIdMismatch { expected: String, actual: String },
    /// A TCB security patch level in the certificate differs from REPORTED_TCB.
    #[error(
        "{component:?} SPL: certificate says {certificate}, report reported_tcb says {report}"
    )]
    TcbMismatch {
        component: TcbComponent,
        certificate: u8,
        report: u8,
    },
    /// The report has MASK_CHIP_KEY set but a non-zero CHIP_ID.
    #[error("mask_chip_key is set but chip_id is not zero")]
    MaskedChipIdNotZero,
    /// Revocation could not be checked: fail closed.
    #[error("no CRL available: revocation cannot be checked")]
    CrlUnavailable,
    /// The CRL does not parse.
    #[error("CRL does not parse")]
    CrlParse,
    /// The CRL was not issued by this chain's ARK.
    #[error("CRL issuer does not match the ARK of this chain")]
    CrlIssuerMismatch,
    /// The CRL signature does not verify with the ARK.
    #[error("CRL signature does not verify with the ARK")]
    CrlSignatureInvalid,
    /// The CRL is not current at the verification time.
    #[error("CRL is not current at {now} (thisUpdate {this_update}, nextUpdate {next_update:?})")]
    CrlNotCurrent {
        this_update: i64,
        next_update: Option<i64>,
        now: i64,
    },
    /// A certificate of the chain is listed in the CRL.
    #[error("{role:?} certificate serial {serial} is revoked")]
    Revoked { role: CertRole, serial: String },
    /// REPORT_DATA is not the expected value.
    #[error("report_data mismatch: expected {expected}, got {actual}")]
    ReportDataMismatch { expected: String, actual: String },
    /// The Azure HCL wrapper is malformed.
    #[error("Azure HCL report: {field} is invalid")]
    HclMalformed { field: &'static str },
    /// The HCL runtime data hash does not match REPORT_DATA[0..32].
    #[error("HCL runtime data: SHA-256 {expected} does not match report_data[0..32] {actual}")]
    HclRuntimeDataMismatch { expected: String, actual: String },
    /// A binary field was truncated (only for wrapper formats).
    #[error("binary structure: {0}")]
    Wire(#[from] crate::wire::WireError),
}
