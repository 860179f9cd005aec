//! Composition of evidence verification and policy into one appraisal.
//!
//! The order is fixed: the evidence is authenticated first (AK public area,
//! quote structure, signature, nonce, PCR digest) and only authentic evidence
//! is compared with the policy. Signature and nonce checks never depend on
//! policy: an empty policy still rejects a forged quote.

use serde::Serialize;

pub mod boot_rules;
mod logs;

pub use logs::{
    appraise_logs, appraise_tpm_with_logs, ImaState, LogAppraisal, LogEvidenceRef, LogStage,
};

use crate::policy::{EvidenceStage, Failure, Policy, Warning};
use crate::tpm::{self, AkPublic, PcrSelection, PcrValues, QuoteOptions, Signature, VerifiedQuote};

/// The overall result, in EAR terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Affirming,
    Contraindicated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Affirming => "affirming",
            Verdict::Contraindicated => "contraindicated",
        }
    }
}

/// Everything one TPM appraisal found.
#[derive(Debug, Clone)]
pub struct TpmAppraisal {
    pub verdict: Verdict,
    /// The quote verified against the host's AK and the expected nonce: the
    /// evidence is genuine, whatever the policy says of it.
    pub quote: Option<VerifiedQuote>,
    /// Every failure (evidence or policy), in the order found.
    pub failures: Vec<Failure>,
    /// Risks the group's policy accepted explicitly (a SHA-1 signature).
    pub warnings: Vec<Warning>,
    /// The policy group that applied, if any.
    pub group: Option<String>,
}

impl TpmAppraisal {
    /// Whether the evidence was authenticated (signature, nonce, PCR digest).
    pub fn authentic(&self) -> bool {
        self.quote.is_some()
    }
}

/// TPM evidence as received.
#[derive(Debug, Clone, Copy)]
pub struct TpmEvidenceRef<'a> {
    pub attest: &'a [u8],
    pub signature: &'a [u8],
    pub pcrs: &'a PcrValues,
}

/// Appraise a quote from `host_id`, whose enrolled AK is `ak_public`
/// (TPM2B_PUBLIC or TPMT_PUBLIC), against `policy`: the quote alone, no
/// logs (a group's Rego module sees `boot` and `ima` as null).
pub fn appraise_tpm(
    policy: &Policy,
    host_id: &str,
    ak_public: &[u8],
    evidence: TpmEvidenceRef<'_>,
    expected_nonce: &[u8],
) -> TpmAppraisal {
    let mut a = appraise_quote(policy, host_id, ak_public, evidence, expected_nonce);
    apply_rego(policy, host_id, &mut a, None, None);
    a
}

/// The group's Rego module (if any) on an authenticated quote and the logs'
/// facts; its failures join the appraisal's.
fn apply_rego(
    policy: &Policy,
    host_id: &str,
    a: &mut TpmAppraisal,
    boot: Option<&serde_json::Value>,
    ima: Option<crate::policy::rego::input::ImaFacts<'_>>,
) {
    let Some(group) = a
        .group
        .as_deref()
        .and_then(|g| policy.groups.iter().find(|x| x.name == g))
    else {
        return;
    };
    let (Some(rules), Some(quote)) = (&group.rego, &a.quote) else {
        return;
    };
    let input = crate::policy::rego::input::tpm(host_id, &group.name, quote, boot, ima);
    let failures = rules.appraise(&group.name, input);
    if !failures.is_empty() {
        a.failures.extend(failures);
        a.verdict = Verdict::Contraindicated;
    }
}

/// The quote stage: authentication, then the group's TOML PCR rules.
fn appraise_quote(
    policy: &Policy,
    host_id: &str,
    ak_public: &[u8],
    evidence: TpmEvidenceRef<'_>,
    expected_nonce: &[u8],
) -> TpmAppraisal {
    let mut failures = Vec::new();
    let group = match policy.group_for(host_id) {
        Ok(g) => Some(g),
        Err(f) => {
            failures.push(f);
            None
        }
    };
    let required = PcrSelection {
        banks: group.map(|g| g.pcr_selection()).unwrap_or_default(),
    };
    let quote = match tpm::Public::parse(ak_public) {
        Err(e) => {
            failures.push(Failure::EvidenceRejected {
                stage: EvidenceStage::AkPublic,
                reason: e.to_string(),
            });
            None
        }
        Ok(ak) => {
            let ak = AkPublic::Tpm(ak);
            let options = QuoteOptions {
                dangerous_accept_sha1_signatures: group
                    .is_some_and(|g| g.dangerous_accept_sha1_signatures),
            };
            match Signature::parse(evidence.signature)
                .map_err(tpm::QuoteError::from)
                .and_then(|signature| {
                    tpm::verify_quote_with_options(
                        evidence.attest,
                        &signature,
                        &ak,
                        expected_nonce,
                        evidence.pcrs,
                        &required,
                        options,
                    )
                }) {
                Ok(q) => Some(q),
                Err(e) => {
                    failures.push(Failure::EvidenceRejected {
                        stage: EvidenceStage::Quote,
                        reason: e.to_string(),
                    });
                    None
                }
            }
        }
    };
    let mut warnings = Vec::new();
    if let (Some(g), Some(q)) = (group, &quote) {
        failures.extend(g.appraise_pcrs(&q.pcrs.0));
        if let Some(hash) = q.accepted_weak_hash {
            warnings.push(Warning::WeakSignatureHashAccepted {
                hash,
                group: g.name.clone(),
            });
        }
    }
    TpmAppraisal {
        verdict: if failures.is_empty() && quote.is_some() {
            Verdict::Affirming
        } else {
            Verdict::Contraindicated
        },
        quote,
        failures,
        warnings,
        group: group.map(|g| g.name.clone()),
    }
}
