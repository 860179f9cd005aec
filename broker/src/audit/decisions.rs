//! Building the leaves handlers log, and logging them with their state
//! changes. Keeps the handlers to one call per decision.

use verifier_lib::audit::{Decision, Leaf, Verdict};
use verifier_lib::crypto::HashAlg;
use verifier_lib::policy::Failure;
use verifier_lib::token::TokenError;

use super::AppendError;
use crate::api::ApiError;
use crate::mint::Minted;
use crate::state::AppState;
use crate::store::audit::{ChangeRefused, Entry, EntryError, StateChange};
use crate::store::{AppraisalRecord, HostStatus, SnpHostRecord};

/// Mints a token given the log index its `token_minted` leaf will get.
pub type MintFn = Box<dyn FnOnce(u64) -> Result<Minted, TokenError> + Send>;

/// Prefix of a prepare error caused by token minting.
pub(crate) const MINT_FAILED: &str = "token mint: ";

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match &e {
            AppendError::Entry(EntryError::Prepare(m)) if m.starts_with(MINT_FAILED) => {
                ApiError::internal("token_mint_failed", e)
            }
            AppendError::Entry(EntryError::Store(_)) => ApiError::internal("storage_error", e),
            AppendError::Entry(EntryError::Refused(r)) => refused(*r),
            _ => ApiError::internal("audit_log_failed", e),
        }
    }
}

/// The client's view of a state change that did not apply.
fn refused(r: ChangeRefused) -> ApiError {
    use axum::http::StatusCode;
    match r {
        ChangeRefused::UnknownHost => ApiError::not_found("unknown_host", "no such host"),
        ChangeRefused::HostNotRevoked => ApiError::new(
            StatusCode::CONFLICT,
            "host_not_revoked",
            "only revoked hosts are reinstated",
        ),
        ChangeRefused::HostNotStale => ApiError::new(
            StatusCode::CONFLICT,
            "host_not_stale",
            "the host attested in the meantime",
        ),
        ChangeRefused::UnknownToken => ApiError::not_found("unknown_token", "no such token"),
        ChangeRefused::ParentRevoked => {
            ApiError::forbidden("parent_revoked", "the parent token is revoked")
        }
        ChangeRefused::HostNotFresh => ApiError::forbidden(
            "host_not_fresh",
            "the host is not trusted with a fresh passing appraisal; attest with a quote",
        ),
        ChangeRefused::RequestKeyUnknown => ApiError::forbidden(
            "request_key_unknown",
            "the request key is not the host's registered one; certify it again",
        ),
    }
}

/// `nonce_issued`: only the nonce's SHA-256 is logged.
pub fn nonce_issued(host: &str, nonce: &[u8], now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::NonceIssued {
            host: host.to_owned(),
            nonce_digest: HashAlg::Sha256.digest(nonce),
        },
    )
}

/// Each failure as its JSON form (`{"rule": ..., ...}`), as reported to
/// the client.
pub fn failure_texts(failures: &[Failure]) -> Vec<String> {
    failures
        .iter()
        .map(|f| serde_json::to_string(f).unwrap_or_else(|_| f.to_string()))
        .collect()
}

/// What an appraisal decided, as recorded.
#[derive(Debug, Clone)]
pub struct AppraisalOutcome<'a> {
    pub rec: &'a AppraisalRecord,
    /// The host's status before this appraisal.
    pub previous: HostStatus,
    /// Its status after.
    pub status: HostStatus,
    pub policy_hash: &'a [u8],
    pub failures: &'a [Failure],
    /// The host's new IMA cursor, stored with the appraisal (TPM only; set
    /// it only when the final verdict is affirming).
    pub ima_cursor: Option<crate::store::ImaCursorRecord>,
}

/// Records an appraisal (host status, and the token `mint` makes, if any)
/// with its `appraisal` leaf, a `host_state_changed` leaf when the host's
/// status moves (leaving `trusted` for `failed` also revokes its tokens, in
/// the same transaction) and, when minted, its `token_minted` leaf. The
/// token is handed back only once committed.
pub async fn record_appraisal(
    st: &AppState,
    outcome: AppraisalOutcome<'_>,
    mint: Option<MintFn>,
) -> Result<Option<Minted>, ApiError> {
    record(st, outcome, None, mint).await
}

/// [`record_appraisal`] for SEV-SNP evidence; `register`: the host's
/// registration at its first affirming appraisal, logged as an accepted
/// `enrollment` (ek_cert_digest: the VCEK/VLEK's SHA-256, empty ak_name)
/// before the appraisal.
pub async fn record_snp_appraisal(
    st: &AppState,
    outcome: AppraisalOutcome<'_>,
    register: Option<SnpHostRecord>,
    mint: Option<MintFn>,
) -> Result<Option<Minted>, ApiError> {
    let register = register.map(Registration);
    record(st, outcome, register, mint).await
}

/// An SNP host registration riding with its appraisal.
struct Registration(SnpHostRecord);

async fn record(
    st: &AppState,
    outcome: AppraisalOutcome<'_>,
    register: Option<Registration>,
    mint: Option<MintFn>,
) -> Result<Option<Minted>, ApiError> {
    let AppraisalOutcome {
        rec,
        previous,
        status,
        policy_hash,
        failures,
        ima_cursor,
    } = outcome;
    let mut leaves = Vec::new();
    if let Some(Registration(h)) = &register {
        leaves.push(enrollment(
            &h.host_id,
            true,
            Some(h.signer_cert_digest.clone()),
            Vec::new(),
            None,
            rec.at,
        ));
    }
    leaves.push(Leaf::new(
        rec.at,
        Decision::Appraisal {
            host: rec.host_id.clone(),
            evidence_digest: rec.evidence_digest.clone(),
            policy_id: rec.policy_id.clone(),
            policy_hash: policy_hash.to_vec(),
            verdict: if rec.verdict == verifier_lib::appraisal::Verdict::Affirming.as_str() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            failures: failure_texts(failures),
            tpm_clock: None,
        },
    ));
    // A revoked host keeps its status whatever the appraisal says.
    if previous != status && previous != HostStatus::Revoked {
        leaves.push(host_state_changed(
            &rec.host_id,
            previous,
            status,
            match status {
                HostStatus::Failed => "failing appraisal; its tokens are revoked",
                _ => "passing appraisal",
            },
            rec.at,
        ));
    }
    let rec = rec.clone();
    let (_, minted) = st
        .audit
        .append_with(move |index| {
            let minted = match mint {
                // The token leaf follows the others.
                Some(m) => {
                    let at = index + u64::try_from(leaves.len()).unwrap_or(u64::MAX);
                    Some(m(at).map_err(|e| format!("{MINT_FAILED}{e}"))?)
                }
                None => None,
            };
            if let Some(m) = &minted {
                leaves.push(token_minted(
                    &m.record,
                    None,
                    &m.record.token_digest,
                    rec.at,
                ));
            }
            let token = minted.as_ref().map(|m| m.record.clone());
            let change = match register {
                None => StateChange::Appraisal {
                    appraisal: rec,
                    status,
                    token,
                    ima_cursor,
                },
                Some(Registration(h)) => StateChange::SnpAppraisal {
                    appraisal: rec,
                    status,
                    token,
                    register: Some(h),
                },
            };
            Ok((Entry { change, leaves }, minted))
        })
        .await?;
    Ok(minted)
}

/// `host_state_changed`.
pub fn host_state_changed(
    host: &str,
    from: HostStatus,
    to: HostStatus,
    reason: &str,
    now: i64,
) -> Leaf {
    Leaf::new(
        now,
        Decision::HostStateChanged {
            host: host.to_owned(),
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
            reason: reason.to_owned(),
        },
    )
}

/// `operator_action`: who did what (the decision's own leaf follows).
pub fn operator_action(op: &crate::operator::Operator, what: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::OperatorAction {
            who: op.name.clone(),
            what: what.to_owned(),
        },
    )
}

/// `host_revoked`.
pub fn host_revoked(host: &str, reason: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::HostRevoked {
            host: host.to_owned(),
            reason: reason.to_owned(),
        },
    )
}

/// `token_revoked` (its descendants are revoked with it).
pub fn token_revoked(cti: &[u8], reason: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::TokenRevoked {
            cti: hex::encode(cti),
            reason: reason.to_owned(),
        },
    )
}

/// `workload_revoked`.
pub fn workload_revoked(workload: &str, reason: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::WorkloadRevoked {
            workload: workload.to_owned(),
            reason: reason.to_owned(),
        },
    )
}

/// `token_minted` for a stored token.
pub fn token_minted(
    t: &crate::store::TokenRecord,
    parent_cti: Option<&[u8]>,
    token_digest: &[u8],
    now: i64,
) -> Leaf {
    Leaf::new(
        now,
        Decision::TokenMinted {
            cti: hex::encode(&t.cti),
            sub: t.host_id.clone(),
            aud: t.workload.clone(),
            exp: t.exp,
            parent_cti: parent_cti.map(hex::encode),
            token_digest: token_digest.to_vec(),
        },
    )
}

/// `enrollment` (accepted or refused).
pub fn enrollment(
    host: &str,
    accepted: bool,
    ek_cert_digest: Option<Vec<u8>>,
    ak_name: Vec<u8>,
    reason: Option<&str>,
    now: i64,
) -> Leaf {
    Leaf::new(
        now,
        Decision::Enrollment {
            host: host.to_owned(),
            accepted,
            ek_cert_digest,
            ak_name,
            reason: reason.map(str::to_owned),
        },
    )
}

/// Logs a refusal that changes no state. The refusal stands whether or not
/// it could be logged (a failure to log is reported in the broker's logs).
pub async fn log_refusal(st: &AppState, leaf: Leaf) {
    if let Err(e) = st.audit.append(StateChange::Nothing, vec![leaf]).await {
        tracing::error!(error = %e, "could not log a refusal in the audit log");
    }
}
