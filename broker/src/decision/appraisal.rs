//! Appraisals of TPM quotes and SEV-SNP reports, with or without a token
//! request: read → decide (`verifier_lib::decision::decide`) → apply.

use std::net::IpAddr;
use std::sync::Arc;

use verifier_lib::api::{AppraisalResponse, SnpEvidence, TpmEvidence};
use verifier_lib::appraisal::ImaState;
use verifier_lib::crypto::HashAlg;
use verifier_lib::decision::appraisal::Prior;
use verifier_lib::decision::claims::{cpu_submod, tpm_submod, ExecutionToken};
use verifier_lib::decision::{
    decide, Appraised, Decision, Denial, EvidenceKind, HostStatus, Input, WorkloadRequest,
};
use verifier_lib::policy::Policy;
use verifier_lib::snp::VerifiedReport;
use verifier_lib::token::{SubmodClaims, VerifyingKey};

use super::{with_retry, DecisionError};
use crate::mint::{self, Minted};
use crate::state::AppState;
use crate::store::audit::{AppraisalChange, Entry, EntryError, Expect, NonceUse, StateChange};
use crate::store::{AppraisalRecord, ImaCursorRecord, SnpHostRecord};
use crate::tee;

/// A token request riding on the evidence.
#[derive(Debug, Clone)]
pub struct TokenAsk<'a> {
    pub workload: &'a str,
    pub digest: &'a [u8],
    pub cnf: Option<VerifyingKey>,
}

/// What an applied appraisal answers.
#[derive(Debug)]
pub struct Outcome {
    pub response: AppraisalResponse,
    /// The minted token, when one was asked for and granted.
    pub token: Option<Minted>,
}

/// Count a decided appraisal, and its token, in the broker's metrics.
fn record(st: &AppState, kind: &str, outcome: &Outcome) {
    st.metrics.appraisal(kind, &outcome.response);
    if outcome.token.is_some() {
        st.metrics.token_minted(kind);
    }
}

/// One TPM appraisal. `nonce` is the challenge (consumed when applied);
/// `expected_nonce` what the quote's extraData must hold (the challenge
/// itself, or its binding to a token request).
pub async fn tpm(
    st: &AppState,
    source: Option<IpAddr>,
    host_id: &str,
    nonce: &[u8],
    expected_nonce: &[u8],
    evidence: &TpmEvidence,
    ask: Option<TokenAsk<'_>>,
) -> Result<Outcome, DecisionError> {
    let outcome = with_retry(|| {
        tpm_pass(
            st,
            source,
            host_id,
            nonce,
            expected_nonce,
            evidence,
            ask.clone(),
        )
    })
    .await?;
    record(st, "tpm", &outcome);
    Ok(outcome)
}

async fn tpm_pass(
    st: &AppState,
    source: Option<IpAddr>,
    host_id: &str,
    nonce: &[u8],
    expected_nonce: &[u8],
    evidence: &TpmEvidence,
    ask: Option<TokenAsk<'_>>,
) -> Result<Outcome, DecisionError> {
    // The cheap check first: a challenge this fleet issued to this host.
    let nonce_use = super::nonce::verify(st, nonce, host_id).await?;
    // Read: one snapshot of the host, its clock baseline and IMA cursor.
    let prior = st
        .store
        .host_state(host_id)
        .await?
        .ok_or_else(|| DecisionError::UnknownHost {
            host: host_id.to_owned(),
        })?;
    let (host, clock) = (prior.host, prior.clock);
    refuse_revoked(host_id, Some(host.status))?;
    let now = st.now();
    let tpm_input = TpmInput {
        st,
        host: &host,
        clock,
        evidence,
        expected_nonce,
        ask: ask.as_ref(),
        now,
    };
    let policy = st.policy.current();
    // Decide.
    let (decision, ima_state, submod) = tpm_input.decide(&policy, prior.ima_cursor.clone());
    // The candidate policy decides too, for the record only.
    let shadow = st.policy.shadow().map(|candidate| {
        let (d, _, _) = tpm_input.decide(&candidate, prior.ima_cursor);
        (candidate, d)
    });
    // Apply.
    apply(
        st,
        Applying {
            decision,
            shadow,
            nonce: nonce_use,
            policy,
            register: None,
            ima_state,
            expect_clock: clock,
            mint: MintPlan::for_request(nonce, ask, submod),
            source,
            now,
        },
    )
    .await
}

/// What a TPM appraisal is decided on, besides the policy (the active
/// policy's and a shadow policy's decisions read the same).
struct TpmInput<'a> {
    st: &'a AppState,
    host: &'a crate::store::HostRecord,
    clock: Option<verifier_lib::host_clock::ClockState>,
    evidence: &'a TpmEvidence,
    expected_nonce: &'a [u8],
    ask: Option<&'a TokenAsk<'a>>,
    now: i64,
}

impl TpmInput<'_> {
    /// Appraise the evidence under `policy` and decide (pure).
    fn decide(
        &self,
        policy: &Policy,
        ima_cursor: Option<ImaCursorRecord>,
    ) -> (
        Decision,
        Option<ImaState>,
        Option<(&'static str, SubmodClaims)>,
    ) {
        let resume = tee::tpm::resume_state(ima_cursor, policy);
        let (appraisal, ima_state) = tee::tpm::appraise(
            policy,
            self.host,
            self.evidence,
            self.expected_nonce,
            resume.as_ref(),
        );
        let appraised = Appraised {
            kind: EvidenceKind::Tpm,
            verdict: appraisal.verdict,
            authentic: appraisal.authentic(),
            failures: appraisal.failures.clone(),
            warnings: appraisal.warnings.clone(),
            group: appraisal.group.clone(),
            clock: appraisal
                .quote
                .as_ref()
                .map(|q| verifier_lib::host_clock::ClockState::from(&q.clock_info)),
            new_boot_log: tee::tpm::verified_boot_log(self.evidence.eventlog.is_some(), &appraisal),
            evidence_digest: tee::tpm::evidence_digest(self.evidence),
            endorsement_digest: None,
        };
        let decision = decide(Input {
            host_id: &self.host.id,
            prior: Prior {
                status: Some(self.host.status),
                clock: self.clock,
            },
            appraised,
            request: self.ask.map(|a| WorkloadRequest {
                workload: a.workload,
                digest: a.digest,
            }),
            policy,
            boot_log_required: self.st.config.hosts.boot_log_required,
            now: self.now,
        });
        let submod = appraisal.quote.as_ref().map(|q| ("tpm", tpm_submod(q)));
        (decision, ima_state, submod)
    }
}

/// One SEV-SNP appraisal; `expected_report_data` is what REPORT_DATA must
/// hold. A host that is not registered registers at its first affirming
/// appraisal.
pub async fn snp(
    st: &AppState,
    source: Option<IpAddr>,
    host_id: &str,
    nonce: &[u8],
    expected_report_data: &[u8; 64],
    evidence: &SnpEvidence,
    ask: Option<TokenAsk<'_>>,
) -> Result<Outcome, DecisionError> {
    let outcome = with_retry(|| {
        snp_pass(
            st,
            source,
            host_id,
            nonce,
            expected_report_data,
            evidence,
            ask.clone(),
        )
    })
    .await?;
    record(st, "snp", &outcome);
    Ok(outcome)
}

async fn snp_pass(
    st: &AppState,
    source: Option<IpAddr>,
    host_id: &str,
    nonce: &[u8],
    expected_report_data: &[u8; 64],
    evidence: &SnpEvidence,
    ask: Option<TokenAsk<'_>>,
) -> Result<Outcome, DecisionError> {
    let snp = st.snp.as_deref().ok_or(DecisionError::SnpUnavailable)?;
    // The cheap check first (before any certificate fetch).
    let nonce_use = super::nonce::verify(st, nonce, host_id).await?;
    // Read.
    let status = st.store.host(host_id).await?.map(|h| h.status);
    refuse_revoked(host_id, status)?;
    let now = st.now();
    let snp_input = SnpInput {
        snp,
        host_id,
        status,
        evidence,
        expected_report_data,
        ask: ask.as_ref(),
        now,
    };
    let policy = st.policy.current();
    // Decide (fetching certificates and CRLs the report needs first).
    let (decision, appraisal, endorsement_digest) = snp_input.decide(&policy).await?;
    // The candidate policy decides too, for the record only.
    let shadow = match st.policy.shadow() {
        Some(candidate) => match snp_input.decide(&candidate).await {
            Ok((d, _, _)) => Some((candidate, d)),
            Err(e) => {
                tracing::warn!(%host_id, error = %e, "shadow policy: SEV-SNP appraisal not completed");
                None
            }
        },
        None => None,
    };
    let register = match (&appraisal.verified, decision.register) {
        (Some(v), true) => Some(registration(
            host_id,
            v,
            endorsement_digest.unwrap_or_default(),
            now,
        )),
        _ => None,
    };
    let submod = appraisal.verified.as_ref().map(|v| ("cpu", cpu_submod(v)));
    apply(
        st,
        Applying {
            decision,
            shadow,
            nonce: nonce_use,
            policy,
            register,
            ima_state: None,
            expect_clock: None,
            mint: MintPlan::for_request(nonce, ask, submod),
            source,
            now,
        },
    )
    .await
}

/// What an SEV-SNP appraisal is decided on, besides the policy.
struct SnpInput<'a> {
    snp: &'a tee::snp::SnpService,
    host_id: &'a str,
    status: Option<HostStatus>,
    evidence: &'a SnpEvidence,
    expected_report_data: &'a [u8; 64],
    ask: Option<&'a TokenAsk<'a>>,
    now: i64,
}

impl SnpInput<'_> {
    /// Appraise the report under `policy` (fetching what it needs) and
    /// decide; also returns the appraisal and the endorsement digest.
    async fn decide(
        &self,
        policy: &Policy,
    ) -> Result<
        (
            Decision,
            verifier_lib::snp_appraisal::SnpAppraisal,
            Option<Vec<u8>>,
        ),
        DecisionError,
    > {
        let (appraisal, assembled) = self
            .snp
            .appraise(
                policy,
                self.host_id,
                self.evidence,
                self.expected_report_data,
                self.now,
            )
            .await
            .map_err(|e| DecisionError::KdsBusy {
                reason: e.to_string(),
            })?;
        let endorsement_digest = assembled.as_ref().map(|a| HashAlg::Sha256.digest(&a.leaf));
        let mut parts: Vec<&[u8]> = vec![
            self.evidence.report.as_slice(),
            self.evidence.vcek.as_deref().unwrap_or_default(),
        ];
        parts.extend(self.evidence.chain.iter().map(Vec::as_slice));
        let appraised = Appraised {
            kind: EvidenceKind::SevSnp,
            verdict: appraisal.verdict,
            authentic: appraisal.authentic(),
            failures: appraisal.failures.clone(),
            warnings: Vec::new(),
            group: appraisal.group.clone(),
            clock: None,
            new_boot_log: false,
            evidence_digest: HashAlg::Sha256.digest_parts(parts),
            endorsement_digest: endorsement_digest.clone(),
        };
        let decision = decide(Input {
            host_id: self.host_id,
            prior: Prior {
                status: self.status,
                clock: None,
            },
            appraised,
            request: self.ask.map(|a| WorkloadRequest {
                workload: a.workload,
                digest: a.digest,
            }),
            policy,
            boot_log_required: false,
            now: self.now,
        });
        Ok((decision, appraisal, endorsement_digest))
    }
}

/// A revoked host gets nothing, and costs no write.
fn refuse_revoked(host_id: &str, status: Option<HostStatus>) -> Result<(), DecisionError> {
    match status {
        Some(HostStatus::Revoked) => Err(DecisionError::Denied {
            denial: Denial::HostRevoked {
                host: host_id.to_owned(),
            },
            appraisal: None,
        }),
        _ => Ok(()),
    }
}

fn registration(
    host_id: &str,
    v: &VerifiedReport,
    signer_cert_digest: Vec<u8>,
    now: i64,
) -> SnpHostRecord {
    SnpHostRecord {
        host_id: host_id.to_owned(),
        chip_id: v.report.chip_id.to_vec(),
        measurement: v.measurement.to_vec(),
        host_data: v.report.host_data.to_vec(),
        product: v.product.as_str().to_owned(),
        signer: v.signer.as_str().to_owned(),
        signer_cert_digest,
        registered_at: now,
    }
}

/// What a granted token needs besides the grant.
struct MintPlan {
    nonce: Vec<u8>,
    digest: Vec<u8>,
    cnf: Option<VerifyingKey>,
    submod: (&'static str, SubmodClaims),
}

impl MintPlan {
    /// The plan for a token request, when there is one and the evidence
    /// verified (its EAR submodule exists).
    fn for_request(
        nonce: &[u8],
        ask: Option<TokenAsk<'_>>,
        submod: Option<(&'static str, SubmodClaims)>,
    ) -> Option<MintPlan> {
        ask.zip(submod).map(|(ask, submod)| MintPlan {
            nonce: nonce.to_vec(),
            digest: ask.digest.to_vec(),
            cnf: ask.cnf,
            submod,
        })
    }
}

struct Applying {
    decision: Decision,
    /// The shadow policy and its decision on the same evidence (recorded
    /// where it differs, never applied).
    shadow: Option<(Arc<Policy>, Decision)>,
    /// The authenticated challenge, consumed when the decision applies.
    nonce: NonceUse,
    policy: Arc<Policy>,
    register: Option<SnpHostRecord>,
    ima_state: Option<ImaState>,
    /// The clock baseline the decision was taken on.
    expect_clock: Option<verifier_lib::host_clock::ClockState>,
    mint: Option<MintPlan>,
    /// Where the request came from (for coalescing refusals).
    source: Option<IpAddr>,
    now: i64,
}

/// Applies an appraisal decision as one state change (minting its token
/// inside the audit writer, so the token carries the index of its own
/// `token_minted` leaf and exists only if everything commits).
async fn apply(st: &AppState, a: Applying) -> Result<Outcome, DecisionError> {
    let Applying {
        decision: d,
        shadow,
        nonce,
        policy,
        register,
        ima_state,
        expect_clock,
        mint,
        source,
        now,
    } = a;
    let host_id = d.host_id.clone();
    if !d.evidence_authentic {
        // Evidence that did not authenticate changes nothing: no row, no
        // leaf of its own, the challenge not consumed; one summary leaf per
        // source and window (finding 3: forged evidence cannot grow the log).
        st.refusals.record(source, "evidence_unauthenticated", now);
        for f in &d.failures {
            tracing::warn!(%host_id, failure = %f, "unauthenticated evidence refused");
        }
        return answer(d, &policy, now, None);
    }
    let record = AppraisalRecord {
        host_id: host_id.clone(),
        at: now,
        verdict: d.verdict.as_str().to_owned(),
        policy_id: policy.id.clone(),
        policy_hash: policy.hash_hex(),
        evidence_digest: appraisal_evidence_digest(&d),
        failures: serde_json::to_string(&d.failures).map_err(|e| DecisionError::Internal {
            what: "encoding failures",
            reason: e.to_string(),
        })?,
    };
    let ima_cursor = match (d.advance_ima_cursor, ima_state) {
        (true, Some(state)) => Some(ImaCursorRecord {
            host_id: host_id.clone(),
            state,
            policy_hash: policy.hash_hex(),
            updated_at: now,
        }),
        _ => None,
    };
    let change = AppraisalChange {
        nonce: NonceUse { at: now, ..nonce },
        expect: Expect {
            status: d.previous,
            clock: expect_clock,
        },
        appraisal: record,
        status: d.status,
        status_reason: d.status_reason,
        register,
        clock: d.clock,
        clock_refused: d.clock_refused.as_ref().map(ToString::to_string),
        token: None,
        ima_cursor,
    };
    let grant = match (&d.token, mint) {
        (Some(Ok(grant)), Some(plan)) => Some((grant.clone(), plan)),
        _ => None,
    };
    let mut leaves = d.leaves.clone();
    // The appraisal leaf records the nonce it consumed.
    for leaf in &mut leaves {
        if let verifier_lib::audit::Decision::Appraisal { nonce_digest, .. } = &mut leaf.decision {
            *nonce_digest = Some(change.nonce.digest.clone());
        }
    }
    let (key, issuer) = (Arc::clone(&st.signing_key), st.config.tokens.issuer.clone());
    let policy_for_mint = Arc::clone(&policy);
    let slot = match grant {
        Some(_) => Some(crate::governance::Governance::allocate(&st.store, &st.config, now).await?),
        None => None,
    };
    let (appended, minted) = st
        .audit
        .commit_with(move |index| {
            let mut change = change;
            let minted = match (grant, &slot) {
                (Some((grant, plan)), Some(slot)) => {
                    // The token's leaf follows the decision's own.
                    let at = index.saturating_add(leaves.len() as u64);
                    let verifier_id = mint::verifier_id();
                    let claims = ExecutionToken {
                        issuer: &issuer,
                        verifier_id: &verifier_id,
                        host_id: &change.appraisal.host_id,
                        grant: &grant,
                        policy: &policy_for_mint,
                        nonce: &plan.nonce,
                        workload_digest: &plan.digest,
                        cnf: plan.cnf,
                        submod: plan.submod,
                    }
                    .claims(mint::new_cti().map_err(EntryError::Mint)?, Some(at));
                    let m = mint::sign(&claims, &key, &policy_for_mint.id, slot)
                        .map_err(EntryError::Mint)?;
                    leaves.push(crate::audit::leaves::token_minted(&m.record, None, now));
                    change.token = Some(m.record.clone());
                    Some(m)
                }
                _ => None,
            };
            Ok((
                Entry {
                    change: StateChange::Appraisal(Box::new(change)),
                    leaves,
                },
                minted,
            ))
        })
        .await?;
    st.metrics
        .tokens_revoked("appraisal", appended.tokens_revoked);
    if d.status == Some(HostStatus::Failed) && d.previous != Some(HostStatus::Failed) {
        st.governance.poke();
    }
    if d.register {
        tracing::info!(%host_id, "SEV-SNP host registered at its first affirming appraisal");
    }
    for f in &d.failures {
        tracing::warn!(%host_id, failure = %f, "appraisal failure");
    }
    if let Some((candidate, shadow)) = shadow {
        super::shadow::record(st, &d, &policy, &shadow, &candidate, now).await;
    }
    answer(d, &policy, now, minted)
}

/// What the client is told about an applied (or coalesced) decision.
fn answer(
    d: Decision,
    policy: &Policy,
    now: i64,
    minted: Option<Minted>,
) -> Result<Outcome, DecisionError> {
    let response = AppraisalResponse {
        host_id: d.host_id.clone(),
        verdict: d.verdict.as_str().to_owned(),
        host_status: d.status_name().to_owned(),
        policy_id: policy.id.clone(),
        policy_hash: policy.hash_hex(),
        appraised_at: now,
        failures: verifier_lib::policy::public::PublicFailure::all(&d.failures),
    };
    match d.token {
        Some(Err(denial)) => Err(DecisionError::Denied {
            denial,
            appraisal: Some(Box::new(response)),
        }),
        Some(Ok(_)) if minted.is_none() => Err(DecisionError::Denied {
            denial: Denial::Appraisal {
                failures: d.failures,
            },
            appraisal: Some(Box::new(response)),
        }),
        _ => Ok(Outcome {
            response,
            token: minted,
        }),
    }
}

/// The evidence digest the decision's appraisal leaf records.
fn appraisal_evidence_digest(d: &Decision) -> Vec<u8> {
    d.leaves
        .iter()
        .find_map(|l| match &l.decision {
            verifier_lib::audit::Decision::Appraisal {
                evidence_digest, ..
            } => Some(evidence_digest.clone()),
            _ => None,
        })
        .unwrap_or_default()
}
