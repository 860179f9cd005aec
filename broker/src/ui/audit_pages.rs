//! The audit pages: browse the signed log's leaves, newest first, see the
//! latest checkpoint, and open a leaf with its inclusion proof verified
//! here against the signed checkpoint.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use verifier_lib::audit::{leaf_hash, open_checkpoint, verify_inclusion, Decision, Leaf};
use verifier_lib::policy::Failure;

use super::describe::describe;
use super::session::SignedIn;
use super::{html, timestamp, Layout, UiError};
use crate::state::AppState;

/// Leaves on one audit page.
pub const PAGE_LEAVES: u64 = 50;

/// The last `max` leaves of the log, decoded, oldest first (leaves that do
/// not decode are skipped: `writ-broker audit verify` reports them).
pub async fn recent_leaves(st: &AppState, max: u64) -> Result<Vec<(u64, Leaf)>, UiError> {
    let size = st.audit.view().tree.len();
    leaves_between(st, size.saturating_sub(max), size).await
}

async fn leaves_between(st: &AppState, start: u64, end: u64) -> Result<Vec<(u64, Leaf)>, UiError> {
    Ok(st
        .store
        .audit_leaves(start, end)
        .await?
        .iter()
        .filter_map(|r| Leaf::decode(&r.leaf).ok().map(|l| (r.index, l)))
        .collect())
}

/// The host a decision is about, if any.
pub fn decision_host(d: &Decision) -> Option<&str> {
    match d {
        Decision::Enrollment { host, .. }
        | Decision::NonceIssued { host, .. }
        | Decision::Appraisal { host, .. }
        | Decision::HostRevoked { host, .. }
        | Decision::RequestKeyCertified { host, .. }
        | Decision::HostStateChanged { host, .. } => Some(host),
        Decision::TokenMinted { sub, .. } => Some(sub),
        _ => None,
    }
}

/// A failure as an appraisal leaf records it (the JSON of the typed
/// failure), in words; text that is not a known failure is shown as is.
pub fn failure_words(recorded: &str) -> String {
    match serde_json::from_str::<Failure>(recorded) {
        Ok(f) => {
            let d = describe(&f);
            format!("{}: {} (rule {})", d.subject, d.actual, d.rule)
        }
        Err(_) => recorded.to_owned(),
    }
}

/// A decision in one line.
pub fn summary(d: &Decision) -> String {
    match d {
        Decision::Enrollment { host, accepted, .. } => {
            format!(
                "enrollment of {host} {}",
                if *accepted { "accepted" } else { "refused" }
            )
        }
        Decision::NonceIssued { host, .. } => format!("challenge issued to {host}"),
        Decision::Appraisal {
            host,
            verdict,
            failures,
            policy_id,
            ..
        } => {
            let verdict = match verdict {
                verifier_lib::audit::Verdict::Pass => "pass".to_owned(),
                verifier_lib::audit::Verdict::Fail => format!(
                    "fail: {}",
                    failures
                        .iter()
                        .map(|f| failure_words(f))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            format!("appraisal of {host} under policy {policy_id}: {verdict}")
        }
        Decision::TokenMinted { cti, sub, aud, .. } => {
            format!("token {cti} minted for {sub}, workload {aud}")
        }
        Decision::TokenRevoked { cti, reason } => format!("token {cti} revoked: {reason}"),
        Decision::HostRevoked { host, reason } => format!("host {host} revoked: {reason}"),
        Decision::WorkloadRevoked { workload, reason } => {
            format!("workload {workload} revoked: {reason}")
        }
        Decision::RequestKeyCertified { host, .. } => format!("request key certified for {host}"),
        Decision::HostStateChanged {
            host,
            from,
            to,
            reason,
        } => format!("host {host}: {from} to {to} ({reason})"),
        Decision::PolicyActivated { policy_id, .. } => format!("policy {policy_id} activated"),
        Decision::OperatorAction { who, what } => format!("operator {who}: {what}"),
    }
}

/// A leaf as a table row.
#[derive(Debug, Clone)]
pub struct LeafRow {
    pub index: u64,
    pub time: String,
    pub kind: &'static str,
    pub summary: String,
}

impl LeafRow {
    pub fn of(index: u64, leaf: &Leaf) -> LeafRow {
        LeafRow {
            index,
            time: timestamp(leaf.time),
            kind: leaf.decision.kind(),
            summary: summary(&leaf.decision),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditList {
    layout: Layout,
    size: u64,
    rows: Vec<LeafRow>,
    checkpoint: Option<(u64, String, String)>,
    older: Option<u64>,
    newer: Option<u64>,
}

/// `?before=N`: the page of leaves below index `N`.
#[derive(Debug, Deserialize)]
pub struct Paging {
    before: Option<u64>,
}

/// `GET /ui/audit`.
pub async fn list(
    State(st): State<AppState>,
    who: SignedIn,
    Query(p): Query<Paging>,
) -> Result<Response, UiError> {
    let (size, checkpoint) = {
        let v = st.audit.view();
        let cp = v
            .latest
            .as_ref()
            .map(|c| (c.size, timestamp(c.created_at), c.note.clone()));
        (v.tree.len(), cp)
    };
    let end = p.before.unwrap_or(size).min(size);
    let start = end.saturating_sub(PAGE_LEAVES);
    let mut rows: Vec<LeafRow> = leaves_between(&st, start, end)
        .await?
        .iter()
        .map(|(i, l)| LeafRow::of(*i, l))
        .collect();
    rows.reverse();
    html(&AuditList {
        layout: Layout::new("Audit log", &who, "audit"),
        size,
        rows,
        checkpoint,
        older: (start > 0).then_some(start),
        newer: (end < size).then(|| end.saturating_add(PAGE_LEAVES).min(size)),
    })
}

/// An inclusion proof as checked for the page.
#[derive(Debug, Clone)]
pub struct ProofView {
    pub tree_size: u64,
    pub root: String,
    pub hashes: Vec<String>,
    /// Whether `root` is from a signed checkpoint (else the current tree).
    pub signed: bool,
    /// `Ok` when verified, else why not.
    pub outcome: Result<(), String>,
}

#[derive(Template)]
#[template(path = "ui/leaf.html")]
struct LeafPage {
    layout: Layout,
    row: LeafRow,
    leaf_hash: String,
    json: String,
    proof: ProofView,
}

fn prove(st: &AppState, index: u64, bytes: &[u8]) -> Result<ProofView, UiError> {
    let v = st.audit.view();
    let hash = leaf_hash(bytes);
    let signed = v
        .latest
        .as_ref()
        .filter(|cp| cp.size > index)
        .map(|cp| open_checkpoint(&cp.note, st.audit.vkey()));
    let (tree_size, root, signed, opened) = match signed {
        Some(Ok(cp)) => (cp.size, cp.root, true, Ok(())),
        Some(Err(e)) => (
            v.tree.len(),
            v.tree.root(),
            true,
            Err(format!("the checkpoint does not verify: {e}")),
        ),
        None => (v.tree.len(), v.tree.root(), false, Ok(())),
    };
    let proof = v
        .tree
        .inclusion_proof(index, tree_size)
        .map_err(|e| UiError::BadRequest {
            what: "inclusion proof",
            reason: e.to_string(),
        })?;
    let outcome = opened.and_then(|()| {
        if v.tree.leaf(index) != Some(hash) {
            return Err("the stored leaf does not hash to the tree's leaf".into());
        }
        verify_inclusion(&hash, index, tree_size, &proof, &root).map_err(|e| e.to_string())
    });
    Ok(ProofView {
        tree_size,
        root: hex::encode(root),
        hashes: proof.iter().map(hex::encode).collect(),
        signed,
        outcome,
    })
}

/// `GET /ui/audit/{index}`: one leaf and its inclusion proof.
pub async fn leaf(
    State(st): State<AppState>,
    who: SignedIn,
    Path(index): Path<u64>,
) -> Result<Response, UiError> {
    let row = st
        .store
        .audit_leaves(index, index.saturating_add(1))
        .await?
        .pop()
        .ok_or_else(|| UiError::NotFound {
            what: "audit leaf",
            id: index.to_string(),
        })?;
    let leaf = Leaf::decode(&row.leaf).map_err(|e| UiError::BadRequest {
        what: "audit leaf",
        reason: e.to_string(),
    })?;
    let proof = prove(&st, index, &row.leaf)?;
    let json = serde_json::to_string_pretty(&leaf).unwrap_or_default();
    html(&LeafPage {
        layout: Layout::new(format!("Audit leaf {index}"), &who, "audit"),
        row: LeafRow::of(index, &leaf),
        leaf_hash: hex::encode(leaf_hash(&row.leaf)),
        json,
        proof,
    })
}

#[cfg(test)]
mod tests {
    use super::failure_words;

    #[test]
    fn recorded_failures_read_as_words() {
        let recorded =
            r#"{"rule":"pcr_not_allowed","bank":"sha256","pcr":16,"actual":"ab","allowed":["00"]}"#;
        assert_eq!(
            failure_words(recorded),
            "PCR 16 (sha256): ab (rule groups.pcrs.16)"
        );
        assert_eq!(failure_words("free text"), "free text");
    }
}
