//! Composition of SEV-SNP report verification and the host group's SNP
//! policy into one appraisal, and the identity of SNP hosts.
//!
//! The order is the TPM path's: the report is authenticated first (chain to
//! a trusted ARK, revocation, signature over the raw bytes, chip id and TCB
//! against the VCEK, REPORT_DATA against the expected binding), then the
//! host identity derived from the report is compared with the claimed one,
//! and only then is the group's `[groups.snp]` policy applied. No check
//! depends on policy except what the policy itself lists.
//!
//! # Host identity
//!
//! SEV-SNP guests are not TPM-enrolled. An SNP host is the pair
//! (CHIP_ID, MEASUREMENT) the AMD secure processor signs into every report:
//! one guest image on one chip. Its id is `snp-` followed by the first 16
//! bytes of `SHA-256("writ-snp-host/v2" ‖ CHIP_ID ‖ MEASUREMENT)` in hex.
//! Fields the hypervisor chooses at launch or per report (HOST_DATA,
//! REPORT_DATA, VMPL, the guest POLICY and the ID block it passes to
//! SNP_LAUNCH_FINISH) are not part of it: a revoked guest cannot come back
//! under a new id by launching with other values for them (the group's
//! `[groups.snp]` policy still constrains each of them). A guest computes
//! its own id from any report it obtains; the broker recomputes it from the
//! verified report and refuses a mismatch. A report with a masked
//! (all-zero) CHIP_ID identifies no host and is refused.

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::appraisal::Verdict;
use crate::crypto::HashAlg;
use crate::policy::{EvidenceStage, Failure, Policy};
use crate::snp::{
    self, AttestationReport, Crl, CrlInput, SnpError, SnpPolicy, SnpTrustAnchors, VerifiedReport,
};

/// Prefix of every SNP host id.
pub const HOST_ID_PREFIX: &str = "snp-";
/// Domain-separation label of the host id derivation (version 2: version 1
/// also hashed HOST_DATA, which let a revoked guest return under a new id).
pub const HOST_ID_LABEL: &[u8] = b"writ-snp-host/v2";

/// The host id a report identifies, or `None` when CHIP_ID is masked.
pub fn snp_host_id(report: &AttestationReport) -> Option<String> {
    if report.chip_id_is_zero() {
        return None;
    }
    let digest = HashAlg::Sha256.digest_parts([
        HOST_ID_LABEL,
        report.chip_id.as_slice(),
        report.measurement.as_slice(),
    ]);
    let short = digest.get(..16).unwrap_or_default();
    Some(format!("{HOST_ID_PREFIX}{}", hex::encode(short)))
}

/// Whether `id` has the shape of an SNP host id (`snp-` + 32 lower-case hex).
pub fn is_snp_host_id(id: &str) -> bool {
    id.strip_prefix(HOST_ID_PREFIX).is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// How revocation is checked for `policy`: against `crl` when one is
/// available; skipped only when the policy says
/// `dangerous_allow_unchecked_revocation`; otherwise unavailable (deny).
pub fn crl_input<'a>(crl: Option<&'a Crl>, policy: Option<&SnpPolicy>) -> CrlInput<'a> {
    match (crl, policy) {
        (Some(c), _) => CrlInput::Fresh(c),
        (None, Some(p)) if p.dangerous_allow_unchecked_revocation => CrlInput::DangerousSkip,
        _ => CrlInput::Unavailable,
    }
}

/// From untrusted certificates (DER), the one whose subject is the issuer
/// of `leaf_der` — the ASK/ASVK. `None` if none matches or nothing parses.
pub fn select_intermediate<'a>(leaf_der: &[u8], candidates: &'a [Vec<u8>]) -> Option<&'a [u8]> {
    let (_, leaf) = X509Certificate::from_der(leaf_der).ok()?;
    let issuer = leaf.issuer().as_raw();
    candidates.iter().map(Vec::as_slice).find(|der| {
        X509Certificate::from_der(der)
            .map(|(_, c)| c.subject().as_raw() == issuer)
            .unwrap_or(false)
    })
}

/// SEV-SNP evidence as the broker assembled it: the report and the
/// VCEK/VLEK (from the guest, the cache, the offline bundle or KDS) and the
/// ASK/ASVK (`None`: the bundled one).
#[derive(Debug, Clone, Copy)]
pub struct SnpEvidenceRef<'a> {
    pub report: &'a [u8],
    pub leaf: &'a [u8],
    pub intermediate: Option<&'a [u8]>,
}

/// Everything one SNP appraisal found.
#[derive(Debug, Clone)]
pub struct SnpAppraisal {
    pub verdict: Verdict,
    /// The report, verified (chain, revocation, signature, binding).
    pub verified: Option<VerifiedReport>,
    /// The host id the verified report identifies.
    pub derived_host_id: Option<String>,
    /// Every failure (evidence or policy), in the order found.
    pub failures: Vec<Failure>,
    /// The policy group that applied, if any.
    pub group: Option<String>,
    /// The verification error, if the report did not verify.
    pub error: Option<SnpError>,
}

impl SnpAppraisal {
    /// Whether the report is genuine, bound to the expected REPORT_DATA and
    /// from the host it claims to be.
    pub fn authentic(&self) -> bool {
        self.verified.is_some() && self.error.is_none() && self.host_matches()
    }

    fn host_matches(&self) -> bool {
        self.derived_host_id.is_some()
            && !self.failures.iter().any(
                |f| matches!(f, Failure::EvidenceRejected { stage, .. } if *stage == EvidenceStage::SnpHost),
            )
    }
}

/// Appraise an SEV-SNP report from `host_id` against `policy`:
/// REPORT_DATA must equal `expected_report_data` exactly.
pub fn appraise_snp(
    policy: &Policy,
    host_id: &str,
    evidence: SnpEvidenceRef<'_>,
    trust: &SnpTrustAnchors,
    crl: Option<&Crl>,
    expected_report_data: &[u8; 64],
    now: i64,
) -> SnpAppraisal {
    let mut failures = Vec::new();
    let group = match policy.group_for(host_id) {
        Ok(g) => Some(g),
        Err(f) => {
            failures.push(f);
            None
        }
    };
    let snp_policy = group.and_then(|g| g.snp.as_ref());
    let revocation = crl_input(crl, snp_policy);
    let (verified, error) = match snp::verify_report(
        evidence.report,
        evidence.leaf,
        evidence.intermediate,
        trust,
        revocation,
        Some(expected_report_data),
        now,
    ) {
        Ok(v) => (Some(v), None),
        Err(e) => {
            failures.push(Failure::EvidenceRejected {
                stage: EvidenceStage::SnpReport,
                reason: e.to_string(),
            });
            (None, Some(e))
        }
    };
    let derived_host_id = verified.as_ref().and_then(|v| snp_host_id(&v.report));
    if let Some(v) = &verified {
        match &derived_host_id {
            None => failures.push(Failure::EvidenceRejected {
                stage: EvidenceStage::SnpHost,
                reason: "CHIP_ID is masked: the report identifies no host".into(),
            }),
            Some(id) if id != host_id => failures.push(Failure::EvidenceRejected {
                stage: EvidenceStage::SnpHost,
                reason: format!("the report identifies host {id}, not {host_id}"),
            }),
            Some(_) => {}
        }
        if let Some(g) = group {
            match &g.snp {
                None => failures.push(Failure::SnpPolicyMissing {
                    group: g.name.clone(),
                }),
                Some(p) => failures.extend(snp::appraise(v, p).into_iter().map(|x| {
                    Failure::SnpPolicyViolated {
                        snp_rule: x.rule,
                        expected: x.expected,
                        actual: x.actual,
                    }
                })),
            }
            if let (Some(rules), Some(_)) = (&g.rego, &g.snp) {
                let input = crate::policy::rego::input::snp(host_id, &g.name, v);
                failures.extend(rules.appraise(&g.name, input));
            }
        }
    }
    SnpAppraisal {
        verdict: if failures.is_empty() && verified.is_some() {
            Verdict::Affirming
        } else {
            Verdict::Contraindicated
        },
        verified,
        derived_host_id,
        failures,
        group: group.map(|g| g.name.clone()),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_id_shape() {
        assert!(is_snp_host_id("snp-0123456789abcdef0123456789abcdef"));
        assert!(!is_snp_host_id("snp-0123456789ABCDEF0123456789abcdef"));
        assert!(!is_snp_host_id("snp-0123"));
        assert!(!is_snp_host_id("tpm-0123456789abcdef0123456789abcdef"));
    }

    /// A real report (its signature is not checked here) with the
    /// hypervisor-chosen fields rewritten.
    fn report_with(host_data: u8, vmpl: u32, report_data: u8) -> AttestationReport {
        let mut b =
            include_bytes!("../tests/vectors/sevsnp/virtee-sev/milan-v2/report.bin").to_vec();
        b[0x30..0x34].copy_from_slice(&vmpl.to_le_bytes());
        b[0x50..0x90].fill(report_data);
        b[0xc0..0xe0].fill(host_data);
        AttestationReport::parse(&b).unwrap()
    }

    #[test]
    fn finding1_snp_host_id_ignores_hypervisor_chosen_fields() {
        let a = report_with(0, 0, 0);
        let b = report_with(0xaa, 2, 0x55);
        assert_ne!(a.host_data, b.host_data);
        assert_ne!(a.vmpl, b.vmpl);
        assert_eq!(snp_host_id(&a), snp_host_id(&b));
        assert!(snp_host_id(&a).is_some_and(|id| is_snp_host_id(&id)));
        // Another image on the same chip is another host.
        let mut other = a.clone();
        other.measurement[0] ^= 1;
        assert_ne!(snp_host_id(&a), snp_host_id(&other));
        let mut other_chip = a.clone();
        other_chip.chip_id[0] ^= 1;
        assert_ne!(snp_host_id(&a), snp_host_id(&other_chip));
    }

    #[test]
    fn crl_input_is_fail_closed() {
        assert!(matches!(crl_input(None, None), CrlInput::Unavailable));
        let p = SnpPolicy::default();
        assert!(matches!(crl_input(None, Some(&p)), CrlInput::Unavailable));
        let skip = SnpPolicy {
            dangerous_allow_unchecked_revocation: true,
            ..SnpPolicy::default()
        };
        assert!(matches!(
            crl_input(None, Some(&skip)),
            CrlInput::DangerousSkip
        ));
    }
}
