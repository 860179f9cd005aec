//! SEV-SNP in the broker: the trust anchors (pinned AMD ARKs, plus test
//! roots only where explicitly allowed), the KDS client, and the assembly
//! of a report with its VCEK/VLEK, ASK/ASVK and a current CRL before the
//! pure appraisal in `verifier_lib::snp_appraisal`.

use std::path::PathBuf;

use verifier_lib::api::SnpEvidence;
use verifier_lib::policy::Policy;
use verifier_lib::snp::{
    AmdCertExtensions, AttestationReport, Product, SignerKind, SnpTrustAnchors,
};
use verifier_lib::snp_appraisal::{
    appraise_snp, select_intermediate, SnpAppraisal, SnpEvidenceRef,
};

use crate::config::Config;
pub mod kds;

use self::kds::{KdsClient, KdsError};

/// Why the SNP verifier could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnpSetupError {
    #[error("pinned AMD ARKs: {0}")]
    Pinned(verifier_lib::snp::SnpError),
    #[error("trust.dangerous_snp_test_roots: unknown product {0:?} (Milan, Genoa or Turin)")]
    UnknownProduct(String),
    #[error("trust.dangerous_snp_test_roots: {path}: {reason}")]
    TestRoot { path: PathBuf, reason: String },
    #[error(transparent)]
    Kds(#[from] KdsError),
}

/// The broker's SEV-SNP verifier.
#[derive(Debug, Clone)]
pub struct SnpService {
    pub trust: SnpTrustAnchors,
    pub kds: KdsClient,
    /// Whether dangerous test roots are trusted (logged, and refused by
    /// `writ-broker serve`).
    pub dangerous_test_roots: bool,
}

/// A report with the certificates found for it, ready to appraise.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub report: Vec<u8>,
    pub leaf: Vec<u8>,
    pub intermediate: Option<Vec<u8>>,
    pub crl: Option<verifier_lib::snp::Crl>,
    /// Why no CRL could be had (logged; the appraisal denies unless the
    /// policy skips revocation dangerously).
    pub crl_problem: Option<String>,
}

/// Why the evidence could not even be assembled (an evidence failure).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error("report: {0}")]
    Report(verifier_lib::snp::SnpError),
    #[error("the report names no product (no CPUID) and no VCEK/VLEK was sent")]
    UnknownProduct,
    #[error("a VLEK-signed report must carry its VLEK certificate")]
    VlekMissing,
    #[error("VCEK: {0}")]
    Vcek(KdsError),
    #[error("certificate chain: {0}")]
    Chain(KdsError),
    /// KDS fetches are at their bound: not a verdict on the evidence.
    #[error("{0}")]
    KdsBusy(KdsError),
}

fn pem_or_der(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    verifier_lib::pem::certificates(&bytes)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| "no CERTIFICATE block".to_owned())
}

impl SnpService {
    /// Pinned AMD ARKs, the configured test roots (if any) and the KDS client.
    pub fn from_config(cfg: &Config) -> Result<Self, SnpSetupError> {
        let mut trust = SnpTrustAnchors::amd_pinned().map_err(SnpSetupError::Pinned)?;
        for root in &cfg.trust.dangerous_snp_test_roots {
            let product = Product::from_name(&root.product)
                .ok_or_else(|| SnpSetupError::UnknownProduct(root.product.clone()))?;
            let err = |reason: String| SnpSetupError::TestRoot {
                path: root.file.clone(),
                reason,
            };
            let bytes = std::fs::read(&root.file).map_err(|e| err(e.to_string()))?;
            let der = pem_or_der(bytes).map_err(err)?;
            trust = trust
                .with_dangerous_extra_root(product, &der)
                .map_err(|e| err(e.to_string()))?;
            tracing::warn!(product = %root.product, file = %root.file.display(),
                "DANGEROUS: trusting an SEV-SNP test root; never do this in production");
        }
        Ok(Self {
            trust,
            kds: KdsClient::new(&cfg.snp)?,
            dangerous_test_roots: !cfg.trust.dangerous_snp_test_roots.is_empty(),
        })
    }

    /// Find the VCEK (evidence, bundle, cache or KDS), the ASK/ASVK
    /// (evidence, bundle, cache or KDS; else the bundled one) and a current
    /// CRL for `evidence`.
    pub async fn assemble(
        &self,
        evidence: &SnpEvidence,
        now: i64,
    ) -> Result<Assembled, AssembleError> {
        let report = AttestationReport::parse(&evidence.report).map_err(AssembleError::Report)?;
        let signer = report.key_info.signing_key;
        let product = match report.cpuid_product() {
            Some(p) => p.map_err(AssembleError::Report)?,
            None => {
                let named = evidence
                    .vcek
                    .as_deref()
                    .and_then(|v| AmdCertExtensions::from_certificate_der(v).ok())
                    .and_then(|e| e.product())
                    .and_then(Result::ok);
                named.ok_or(AssembleError::UnknownProduct)?
            }
        };
        let leaf = match (&evidence.vcek, signer) {
            (Some(v), _) => v.clone(),
            (None, SignerKind::Vlek) => return Err(AssembleError::VlekMissing),
            (None, SignerKind::Vcek) => {
                let hwid_len = if product == Product::Turin { 8 } else { 64 };
                let hwid = report.chip_id.get(..hwid_len).unwrap_or_default();
                self.kds
                    .vcek(product, hwid, report.reported_tcb)
                    .await
                    .map_err(|e| match e {
                        KdsError::Busy { .. } => AssembleError::KdsBusy(e),
                        e => AssembleError::Vcek(e),
                    })?
            }
        };
        let intermediate = match select_intermediate(&leaf, &evidence.chain) {
            Some(i) => Some(i.to_vec()),
            None => match self.kds.cert_chain(product, signer).await {
                Ok(c) => Some(c.intermediate),
                Err(e) => {
                    // The bundled ASK/ASVK may still do.
                    tracing::info!(error = %e, "no KDS cert_chain; trying the bundled intermediate");
                    None
                }
            },
        };
        let (crl, crl_problem) = match self.kds.crl(product, signer, now).await {
            Ok(c) => (Some(c.crl), None),
            Err(e @ KdsError::Busy { .. }) => return Err(AssembleError::KdsBusy(e)),
            Err(e) => {
                tracing::warn!(error = %e, ?product, "no current SEV-SNP CRL");
                (None, Some(e.to_string()))
            }
        };
        Ok(Assembled {
            report: evidence.report.clone(),
            leaf,
            intermediate,
            crl,
            crl_problem,
        })
    }

    /// Assemble and appraise: REPORT_DATA must equal `expected_report_data`.
    /// `Err` only when KDS fetches are at their bound (the request fails
    /// closed without a verdict: `kds_busy`).
    pub async fn appraise(
        &self,
        policy: &Policy,
        host_id: &str,
        evidence: &SnpEvidence,
        expected_report_data: &[u8; 64],
        now: i64,
    ) -> Result<(SnpAppraisal, Option<Assembled>), KdsError> {
        Ok(match self.assemble(evidence, now).await {
            Ok(a) => {
                let ev = SnpEvidenceRef {
                    report: &a.report,
                    leaf: &a.leaf,
                    intermediate: a.intermediate.as_deref(),
                };
                let appraisal = appraise_snp(
                    policy,
                    host_id,
                    ev,
                    &self.trust,
                    a.crl.as_ref(),
                    expected_report_data,
                    now,
                );
                (appraisal, Some(a))
            }
            Err(AssembleError::KdsBusy(e)) => return Err(e),
            Err(e) => (unassembled(policy, host_id, &e), None),
        })
    }
}

/// The appraisal of evidence that could not be assembled.
fn unassembled(policy: &Policy, host_id: &str, e: &AssembleError) -> SnpAppraisal {
    let mut failures = Vec::new();
    let group = match policy.group_for(host_id) {
        Ok(g) => Some(g.name.clone()),
        Err(f) => {
            failures.push(f);
            None
        }
    };
    failures.push(verifier_lib::policy::Failure::EvidenceRejected {
        stage: verifier_lib::policy::EvidenceStage::SnpEvidence,
        reason: e.to_string(),
    });
    SnpAppraisal {
        verdict: verifier_lib::appraisal::Verdict::Contraindicated,
        verified: None,
        derived_host_id: None,
        failures,
        group,
        error: None,
    }
}
