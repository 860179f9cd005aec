//! `/v1/audit/*`: the signed Merkle log of decisions, for anyone to check
//! offline (docs/audit.md): checkpoints, proofs and leaf hashes are public;
//! leaf contents are for operators. Query parameters are parsed strictly: unknown,
//! duplicate or malformed parameters are refused with `invalid_query`.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use verifier_lib::api::b64;
use verifier_lib::audit::{Decision, Hash, Leaf, Verdict};

use super::{operator, ApiError};
use crate::state::AppState;

/// Most entries one `/v1/audit/entries` answer carries.
pub const MAX_ENTRIES: u64 = 1000;

/// Checkpoints one `/v1/audit/checkpoints` answer carries without `limit`.
pub const DEFAULT_CHECKPOINTS: u64 = 100;

/// Most checkpoints one `/v1/audit/checkpoints` answer carries (a larger
/// `limit` is lowered to this).
pub const MAX_CHECKPOINTS: u64 = 1000;

/// Parsed query string: each allowed key at most once.
struct Params(BTreeMap<&'static str, String>);

impl Params {
    fn parse(raw: Option<&str>, allowed: &[&'static str]) -> Result<Params, ApiError> {
        let mut out = BTreeMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(key) = allowed.iter().find(|a| **a == k) else {
                return Err(invalid_query(format!(
                    "unknown parameter {k:?}; allowed: {}",
                    allowed.join(", ")
                )));
            };
            if out.insert(*key, v.to_owned()).is_some() {
                return Err(invalid_query(format!("parameter {k} given twice")));
            }
        }
        Ok(Params(out))
    }

    fn u64(&self, key: &'static str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(key)
            .map(|v| {
                let ok = !v.is_empty()
                    && v.len() <= 20
                    && v.bytes().all(|b| b.is_ascii_digit())
                    && (v.len() == 1 || !v.starts_with('0'));
                ok.then(|| v.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| invalid_query(format!("{key}: expected a decimal integer")))
            })
            .transpose()
    }

    fn hash(&self, key: &'static str) -> Result<Option<Hash>, ApiError> {
        self.0
            .get(key)
            .map(|v| {
                let mut h = [0u8; 32];
                hex::decode_to_slice(v, &mut h)
                    .map(|_| h)
                    .map_err(|_| invalid_query(format!("{key}: expected 64 hex digits")))
            })
            .transpose()
    }
}

fn invalid_query(msg: String) -> ApiError {
    ApiError::bad_request("invalid_query", msg)
}

fn invalid_range(msg: String) -> ApiError {
    ApiError::bad_request("invalid_range", msg)
}

fn beyond_tree(what: &str, value: u64, size: u64) -> ApiError {
    ApiError::bad_request(
        "beyond_tree",
        format!("{what} {value} is beyond the log's {size} leaves"),
    )
}

fn text(body: String) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `GET /v1/audit/key`: this broker's checkpoint verifier key
/// (signed-note vkey).
#[utoipa::path(
    get,
    path = "/v1/audit/key",
    tag = "audit",
    responses((status = 200, description = "The checkpoint verifier key (signed-note vkey)", body = String, content_type = "text/plain"), super::openapi::ApiErrors)
)]
pub async fn key(State(st): State<AppState>) -> axum::response::Response {
    text(format!("{}\n", st.audit.vkey()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditKeyItem {
    /// `<key name>+<8 hex key hash>`: what a checkpoint's signature line names.
    pub key_id: String,
    pub vkey: String,
    /// The broker holding the key (`broker.name`).
    pub broker: String,
    pub added_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditKeyList {
    /// The key of the broker answering.
    pub this_broker: String,
    pub keys: Vec<AuditKeyItem>,
}

/// `GET /v1/audit/keys`: every checkpoint verifier key published in the
/// store by the brokers sharing this log (each checkpoint verifies under
/// the key its note names). Fetched from a broker, the set proves that
/// checkpoints are consistent with each other, not who signed them: pin
/// the keys out of band for that (`audit verify --trusted-keys`).
#[utoipa::path(
    get,
    path = "/v1/audit/keys",
    tag = "audit",
    responses((status = 200, description = "Every checkpoint verifier key published by the brokers sharing this log", body = AuditKeyList), super::openapi::ApiErrors)
)]
pub async fn keys(State(st): State<AppState>) -> Result<Json<AuditKeyList>, ApiError> {
    let keys = st.store.audit_keys().await?;
    Ok(Json(AuditKeyList {
        this_broker: st.audit.key_id().to_owned(),
        keys: keys
            .into_iter()
            .map(|k| AuditKeyItem {
                key_id: k.key_id,
                vkey: k.vkey,
                broker: k.broker,
                added_at: k.added_at,
                retired_at: k.retired_at,
            })
            .collect(),
    }))
}

/// Loads what other brokers appended when a reader asks for leaf or size
/// `wanted` beyond this broker's tree.
async fn cover(st: &AppState, wanted: u64) -> Result<(), ApiError> {
    st.audit.size_covering(wanted).await?;
    Ok(())
}

/// `GET /v1/audit/checkpoint`: the newest signed checkpoint (a C2SP note).
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoint",
    tag = "audit",
    responses((status = 200, description = "The newest signed checkpoint (C2SP signed note)", body = String, content_type = "text/plain"), super::openapi::ApiErrors)
)]
pub async fn checkpoint(State(st): State<AppState>) -> Result<axum::response::Response, ApiError> {
    let latest = st.audit.view().latest.clone();
    let latest = match latest {
        Some(cp) => Some(cp),
        None => st.audit.checkpoint_now().await?,
    };
    let cp = latest.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no_checkpoint",
            "no checkpoint signed yet",
        )
    })?;
    Ok(text(cp.note))
}

#[derive(Debug, Serialize)]
pub struct CheckpointItem {
    pub size: u64,
    pub created_at: i64,
    /// The signing key (see `/v1/audit/keys`).
    pub key_id: String,
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointItem>,
    /// `from_size` of the next page; `null` on the last page.
    pub next_from_size: Option<u64>,
}

/// `GET /v1/audit/checkpoints?from_size=N&limit=M`: the first `M` (default
/// [`DEFAULT_CHECKPOINTS`], at most [`MAX_CHECKPOINTS`]) checkpoints with
/// size >= N, in issue order, and where the next page starts. Checkpoints
/// are stored under the log's write lock, so their sizes never decrease in
/// issue order; several brokers may each sign the same size, so a page
/// does not end inside a run of equal sizes (unless the whole page is one
/// run) and the next page starts at the first size it left out.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoints",
    tag = "audit",
    params(("from_size" = Option<u64>, Query, description = "Smallest tree size"), ("limit" = Option<u32>, Query, description = "Page size")),
    responses((status = 200, description = "A page of checkpoints in issue order", content_type = "application/json"), super::openapi::ApiErrors)
)]
pub async fn checkpoints(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<CheckpointList>, ApiError> {
    let p = Params::parse(q.as_deref(), &["from_size", "limit"])?;
    let from = p.u64("from_size")?.unwrap_or(0);
    let limit = match p.u64("limit")? {
        Some(0) => return Err(invalid_query("limit: must be at least 1".into())),
        Some(n) => n.min(MAX_CHECKPOINTS),
        None => DEFAULT_CHECKPOINTS,
    };
    // One more than asked tells whether there is a next page.
    let mut rows = st.store.audit_checkpoints(from, limit + 1).await?;
    let more = u64::try_from(rows.len()).unwrap_or(u64::MAX) > limit;
    let next_from_size = if more {
        let first_left_out = rows
            .get(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|r| r.size);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let first_size = rows.first().map(|r| r.size);
        match first_left_out {
            // The page would split a run of equal sizes: end it before the run.
            Some(s) if first_size.is_some_and(|f| f < s) => {
                rows.retain(|r| r.size < s);
                Some(s)
            }
            _ => rows.last().map(|r| r.size.saturating_add(1)),
        }
    } else {
        None
    };
    Ok(Json(CheckpointList {
        checkpoints: rows
            .into_iter()
            .map(|r| CheckpointItem {
                size: r.size,
                created_at: r.created_at,
                key_id: r.key_id,
                note: r.note,
            })
            .collect(),
        next_from_size,
    }))
}

/// What anyone may read of a leaf: the decision's kind and time, the host
/// it is about and the verdict of an appraisal. Policy values, failure
/// details, operator names and revocation reasons stay in the leaf, for
/// operators (issue #12, finding 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeafSummary {
    pub time: i64,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl LeafSummary {
    pub fn of(leaf: &Leaf) -> LeafSummary {
        let (kind, host, verdict) = match &leaf.decision {
            Decision::Enrollment { host, .. } => ("enrollment", Some(host), None),
            Decision::NonceIssued { host, .. } => ("nonce_issued", Some(host), None),
            Decision::Appraisal { host, verdict, .. } => ("appraisal", Some(host), Some(*verdict)),
            Decision::TokenMinted { .. } => ("token_minted", None, None),
            Decision::TokenRevoked { .. } => ("token_revoked", None, None),
            Decision::HostRevoked { host, .. } => ("host_revoked", Some(host), None),
            Decision::WorkloadRevoked { .. } => ("workload_revoked", None, None),
            Decision::RequestKeyCertified { host, .. } => {
                ("request_key_certified", Some(host), None)
            }
            Decision::HostStateChanged { host, .. } => ("host_state_changed", Some(host), None),
            Decision::PolicyActivated { .. } => ("policy_activated", None, None),
            Decision::OperatorAction { .. } => ("operator_action", None, None),
        };
        LeafSummary {
            time: leaf.time,
            kind,
            host: host.cloned(),
            verdict,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EntryItem {
    pub index: u64,
    /// SHA-256(0x00 ‖ leaf) as stored, hex.
    pub leaf_hash: String,
    /// The public summary (null if the leaf does not decode).
    pub summary: Option<LeafSummary>,
    /// Operators only: the encoded leaf (deterministic CBOR), base64url.
    #[serde(with = "b64::option", default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<Vec<u8>>,
    /// Operators only: the leaf decoded, for reading (null if it does not
    /// decode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoded: Option<Leaf>,
}

#[derive(Debug, Serialize)]
pub struct EntryList {
    /// Committed leaves when the answer was made.
    pub tree_size: u64,
    /// `true` when the answer carries leaf contents (`leaf`, `decoded`):
    /// an authenticated operator asked.
    pub full: bool,
    pub entries: Vec<EntryItem>,
}

/// `GET /v1/audit/entries?start=A&end=B`: leaves `A..B` (at most
/// [`MAX_ENTRIES`]; `end` is clamped to the log's size). Anyone gets each
/// leaf's hash and [`LeafSummary`]; with an operator's
/// `Authorization: Bearer` token, also the leaf itself. A token that does
/// not authenticate is refused (401), not served the public form.
#[utoipa::path(
    get,
    path = "/v1/audit/entries",
    tag = "audit",
    params(("start" = u64, Query), ("end" = u64, Query)),
    responses((status = 200, description = "Leaves start..end: hash and summary; the leaf itself with an operator token", content_type = "application/json"), super::openapi::ApiErrors)
)]
pub async fn entries(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<EntryList>, ApiError> {
    let full = if headers.contains_key(header::AUTHORIZATION)
        || st.config.operators.dangerous_unauthenticated
    {
        let operator = operator::authenticate(&st, &headers)?;
        tracing::debug!(operator = %operator.name, "audit entries with leaf contents");
        true
    } else {
        false
    };
    let p = Params::parse(q.as_deref(), &["start", "end"])?;
    let start = p.u64("start")?.unwrap_or(0);
    cover(&st, start).await?;
    let size = st.audit.view().tree.len();
    let end = p.u64("end")?;
    if let Some(end) = end.filter(|e| start >= *e) {
        return Err(invalid_range(format!(
            "start {start} must be below end {end}"
        )));
    }
    if start >= size {
        return Err(beyond_tree("start", start, size));
    }
    let end = end.unwrap_or(size);
    let end = end.min(size).min(start.saturating_add(MAX_ENTRIES));
    let rows = st.store.audit_leaves(start, end).await?;
    Ok(Json(EntryList {
        tree_size: size,
        full,
        entries: rows
            .into_iter()
            .map(|r| {
                let decoded = Leaf::decode(&r.leaf).ok();
                EntryItem {
                    index: r.index,
                    leaf_hash: hex::encode(&r.leaf_hash),
                    summary: decoded.as_ref().map(LeafSummary::of),
                    leaf: full.then_some(r.leaf),
                    decoded: decoded.filter(|_| full),
                }
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub root: String,
    pub proof: Vec<String>,
}

/// Tree size a proof is made for: the parameter, or the newest checkpoint's.
fn proof_size(st: &AppState, given: Option<u64>) -> Result<u64, ApiError> {
    let v = st.audit.view();
    let size = v.tree.len();
    let target = match given {
        Some(s) => s,
        None => v.latest.as_ref().map_or(size, |c| c.size),
    };
    if target > size {
        return Err(beyond_tree("tree_size", target, size));
    }
    Ok(target)
}

/// `GET /v1/audit/proof/inclusion?index=I|leaf_hash=H[&tree_size=N]`
/// (default size: the newest checkpoint's).
#[utoipa::path(
    get,
    path = "/v1/audit/proof/inclusion",
    tag = "audit",
    params(("index" = Option<u64>, Query), ("leaf_hash" = Option<String>, Query), ("tree_size" = Option<u64>, Query)),
    responses((status = 200, description = "An RFC 6962 inclusion proof", content_type = "application/json"), super::openapi::ApiErrors)
)]
pub async fn inclusion(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<InclusionProof>, ApiError> {
    let p = Params::parse(q.as_deref(), &["index", "leaf_hash", "tree_size"])?;
    let wanted = p
        .u64("index")?
        .max(p.u64("tree_size")?.map(|s| s.saturating_sub(1)));
    if let Some(w) = wanted {
        cover(&st, w).await?;
    }
    let tree_size = proof_size(&st, p.u64("tree_size")?)?;
    let v = st.audit.view();
    let index = match (p.u64("index")?, p.hash("leaf_hash")?) {
        (Some(i), None) => i,
        (None, Some(h)) => (0..tree_size)
            .find(|i| v.tree.leaf(*i) == Some(h))
            .ok_or_else(|| {
                ApiError::not_found(
                    "leaf_not_found",
                    format!(
                        "no leaf with hash {} in the first {tree_size}",
                        hex::encode(h)
                    ),
                )
            })?,
        _ => {
            return Err(invalid_query(
                "give exactly one of index and leaf_hash".into(),
            ))
        }
    };
    if index >= tree_size {
        return Err(beyond_tree("index", index, tree_size));
    }
    let proof = v
        .tree
        .inclusion_proof(index, tree_size)
        .map_err(|e| invalid_range(e.to_string()))?;
    let root = v
        .tree
        .root_at(tree_size)
        .map_err(|e| invalid_range(e.to_string()))?;
    let leaf = v.tree.leaf(index).unwrap_or_default();
    Ok(Json(InclusionProof {
        index,
        tree_size,
        leaf_hash: hex::encode(leaf),
        root: hex::encode(root),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

#[derive(Debug, Serialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    pub proof: Vec<String>,
}

/// `GET /v1/audit/proof/consistency?from=A[&to=B]` (default `to`: the newest
/// checkpoint's size).
#[utoipa::path(
    get,
    path = "/v1/audit/proof/consistency",
    tag = "audit",
    params(("from" = u64, Query), ("to" = Option<u64>, Query)),
    responses((status = 200, description = "An RFC 6962 consistency proof", content_type = "application/json"), super::openapi::ApiErrors)
)]
pub async fn consistency(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let p = Params::parse(q.as_deref(), &["from", "to"])?;
    let from = p
        .u64("from")?
        .ok_or_else(|| invalid_query("from is required".into()))?;
    if let Some(to) = p.u64("to")? {
        cover(&st, to.saturating_sub(1)).await?;
    }
    let to = proof_size(&st, p.u64("to")?)?;
    if from > to {
        return Err(invalid_range(format!("from {from} is larger than to {to}")));
    }
    let v = st.audit.view();
    let proof = v
        .tree
        .consistency_proof(from, to)
        .map_err(|e| invalid_range(e.to_string()))?;
    let from_root = v
        .tree
        .root_at(from)
        .map_err(|e| invalid_range(e.to_string()))?;
    let to_root = v
        .tree
        .root_at(to)
        .map_err(|e| invalid_range(e.to_string()))?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        from_root: hex::encode(from_root),
        to_root: hex::encode(to_root),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}
