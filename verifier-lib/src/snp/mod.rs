//! AMD SEV-SNP attestation: report parsing, the VCEK/VLEK → ASK/ASVK → ARK
//! chain with AMD's extensions and CRL, report-data binding, and policy
//! appraisal.
//!
//! The report is parsed from its raw bytes and its signature is verified
//! over those same bytes (`0x000..0x2A0`), never over a re-encoding. ARKs
//! are pinned in the crate ([`SnpTrustAnchors::amd_pinned`]); revocation
//! is mandatory unless the caller passes [`CrlInput::DangerousSkip`].

mod chain;
mod crl;
mod error;
mod hcl;
mod hex_serde;
pub mod kds_ext;
mod policy;
mod report;

pub use chain::{verify_chain, CertRole, SnpTrustAnchors, VerifiedChain};
pub use crl::{Crl, CrlInput};
pub use error::SnpError;
pub use hcl::{parse_hcl_report, HclReport};
pub use kds_ext::AmdCertExtensions;
pub use policy::{
    appraise, MinFirmwareVersion, SnpPolicy, SnpPolicyError, SnpPolicyViolation, SnpRule,
    TcbMinimum,
};
pub use report::{
    AttestationReport, Cpuid, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, TcbComponent,
    TcbParts, TcbVersion, REPORT_LEN, SIGNATURE_OFFSET, SIGNATURE_RS_LEN, SIGNED_LEN,
};

use crate::crypto::{ct_eq, HashAlg};
use serde::{Deserialize, Serialize};

/// An AMD EPYC product line with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    /// Parse `Milan`, `Genoa` or `Turin`.
    pub fn from_name(name: &str) -> Option<Product> {
        match name {
            "Milan" => Some(Product::Milan),
            "Genoa" => Some(Product::Genoa),
            "Turin" => Some(Product::Turin),
            _ => None,
        }
    }

    /// The product's name (`Milan`, `Genoa`, `Turin`), as [`Self::from_name`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }
}

/// Which endorsement key signed a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignerKind {
    /// Versioned Chip Endorsement Key (per chip and TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider and TCB).
    Vlek,
}

impl SignerKind {
    /// `vcek` or `vlek`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignerKind::Vcek => "vcek",
            SignerKind::Vlek => "vlek",
        }
    }
}

/// A report whose signature, chain, revocation status and binding to the
/// certificate were all verified.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedReport {
    /// Every field of the report.
    pub report: AttestationReport,
    pub product: Product,
    pub signer: SignerKind,
    /// The chip id the report is bound to: the VCEK hwID (equal to the
    /// report's CHIP_ID, or its first 8 bytes on Turin). `None` for VLEK.
    #[serde(serialize_with = "hex_serde::ser_opt")]
    pub chip_id: Option<Vec<u8>>,
    /// MASK_CHIP_KEY was set: CHIP_ID is zero and was not compared.
    pub chip_id_masked: bool,
    pub reported_tcb: TcbParts,
    pub committed_tcb: TcbParts,
    pub current_tcb: TcbParts,
    pub launch_tcb: TcbParts,
    #[serde(serialize_with = "hex_serde::ser")]
    pub measurement: [u8; 48],
    /// The VLEK's cloud provider, if signed by a VLEK.
    pub csp_id: Option<String>,
    /// Whether a CRL was checked.
    pub revocation_checked: bool,
    /// Whether the chain ends in a dangerous extra root.
    pub dangerous_root: bool,
}

/// The REPORT_DATA a verifier expects for a nonce and a key the guest
/// binds to the report: SHA-512(nonce ‖ bound_key), inputs used as given.
pub fn expected_report_data(nonce: &[u8], bound_key: &[u8]) -> [u8; 64] {
    let digest = HashAlg::Sha512.digest_parts([nonce, bound_key]);
    let mut out = [0u8; 64];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = d;
    }
    out
}

/// Verify `report` (raw 1184 bytes) against its VCEK/VLEK, the ASK/ASVK
/// (from the evidence, or `None` for the bundled one), the trusted ARKs and
/// the CRL, at `now_unix`; then, if given, compare REPORT_DATA exactly.
pub fn verify_report(
    report: &[u8],
    vcek_or_vlek_der: &[u8],
    ask_or_asvk_der: Option<&[u8]>,
    trust: &SnpTrustAnchors,
    crl: CrlInput<'_>,
    expected_report_data: Option<&[u8; 64]>,
    now_unix: i64,
) -> Result<VerifiedReport, SnpError> {
    let parsed = AttestationReport::parse(report)?;
    let chain = verify_chain(vcek_or_vlek_der, ask_or_asvk_der, trust, crl, now_unix)?;
    verify_parsed_with_chain(parsed, &chain, expected_report_data)
}

/// Verify `report` against an already verified (cached) chain; `now_unix`
/// must still be inside the chain's validity and CRL window.
pub fn verify_report_with_chain(
    report: &[u8],
    chain: &VerifiedChain,
    expected_report_data: Option<&[u8; 64]>,
    now_unix: i64,
) -> Result<VerifiedReport, SnpError> {
    let parsed = AttestationReport::parse(report)?;
    chain.check_current(now_unix)?;
    verify_parsed_with_chain(parsed, chain, expected_report_data)
}

fn verify_parsed_with_chain(
    report: AttestationReport,
    chain: &VerifiedChain,
    expected_report_data: Option<&[u8; 64]>,
) -> Result<VerifiedReport, SnpError> {
    let product = chain.product;
    if report.key_info.signing_key != chain.signer {
        return Err(SnpError::SignerMismatch {
            report: report.key_info.signing_key,
            certificate: chain.signer,
        });
    }
    if let Some(from_cpuid) = report.cpuid_product() {
        let from_cpuid = from_cpuid?;
        if from_cpuid != product {
            return Err(SnpError::ProductMismatch {
                expected: product,
                actual: from_cpuid,
                source_name: "report CPUID",
            });
        }
    }
    report.verify_signature(&chain.key)?;

    let ext = &chain.extensions;
    let masked = report.key_info.mask_chip_key;
    let chip_id = match (chain.signer, &ext.hw_id) {
        (SignerKind::Vcek, Some(hw)) => {
            if masked {
                if !report.chip_id_is_zero() {
                    return Err(SnpError::MaskedChipIdNotZero);
                }
            } else {
                let reported = report.chip_id.get(..hw.len()).unwrap_or_default();
                if !ct_eq(reported, hw) {
                    return Err(SnpError::ChipIdMismatch {
                        expected: hex::encode(hw),
                        actual: hex::encode(reported),
                    });
                }
            }
            Some(hw.clone())
        }
        (SignerKind::Vcek, None) => {
            return Err(SnpError::MissingExtension {
                oid: kds_ext::OID_HW_ID,
            })
        }
        (SignerKind::Vlek, _) => None,
    };

    let reported_tcb = report.reported_tcb.parts(product);
    for component in [
        TcbComponent::Fmc,
        TcbComponent::Bootloader,
        TcbComponent::Tee,
        TcbComponent::Snp,
        TcbComponent::Microcode,
    ] {
        let (Some(certificate), reported) = (ext.spl(component), reported_tcb.component(component))
        else {
            continue;
        };
        if Some(certificate) != reported {
            return Err(SnpError::TcbMismatch {
                component,
                certificate,
                report: reported.unwrap_or(0),
            });
        }
    }

    if let Some(expected) = expected_report_data {
        if !ct_eq(expected, &report.report_data) {
            return Err(SnpError::ReportDataMismatch {
                expected: hex::encode(expected),
                actual: hex::encode(report.report_data),
            });
        }
    }

    Ok(VerifiedReport {
        product,
        signer: chain.signer,
        chip_id,
        chip_id_masked: masked,
        reported_tcb,
        committed_tcb: report.committed_tcb.parts(product),
        current_tcb: report.current_tcb.parts(product),
        launch_tcb: report.launch_tcb.parts(product),
        measurement: report.measurement,
        csp_id: ext.csp_id.clone(),
        revocation_checked: chain.revocation_checked,
        dangerous_root: chain.dangerous_root,
        report,
    })
}
