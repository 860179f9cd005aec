//! Fuzz entry points for `snp`.

use crate::snp::{
    parse_hcl_report, verify_report, AmdCertExtensions, AttestationReport, CrlInput,
    SnpTrustAnchors,
};

const VCEK: &[u8] = include_bytes!("../../tests/vectors/sevsnp/go-sev-guest/milan-v2/vcek.der");
const ASK: &[u8] = include_bytes!("../../ca/amd/milan_ask.der");
/// 2022-09-25, one day after the fixed VCEK's notBefore.
const NOW: i64 = 1_664_067_328;

/// Parse arbitrary bytes as a report (and as an Azure HCL wrapper), then
/// verify them against a fixed real Milan chain. Must never panic.
pub fn snp_report(data: &[u8]) {
    let _ = AttestationReport::parse(data);
    let _ = parse_hcl_report(data);
    static TRUST: std::sync::OnceLock<Option<SnpTrustAnchors>> = std::sync::OnceLock::new();
    if let Some(trust) = TRUST.get_or_init(|| SnpTrustAnchors::amd_pinned().ok()) {
        let _ = verify_report(
            data,
            VCEK,
            Some(ASK),
            trust,
            CrlInput::DangerousSkip,
            None,
            NOW,
        );
    }
}

/// Parse AMD VCEK/VLEK extensions (and product/signer kind) from arbitrary
/// DER. Must never panic.
pub fn snp_vcek_ext(data: &[u8]) {
    if let Ok(ext) = AmdCertExtensions::from_certificate_der(data) {
        let _ = ext.product();
        let _ = ext.signer_kind();
    }
    let _ = crate::snp::Crl::parse(data);
}
