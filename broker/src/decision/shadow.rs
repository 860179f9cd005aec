//! Shadow evaluation (issue #17): every real appraisal is also decided
//! under the shadow (candidate) policy — the same evidence, the same prior
//! state, the pure `decide` again — and where the verdicts differ a
//! [`ShadowDifference`] is recorded. The shadow decision is never applied:
//! it mints, revokes and moves nothing.
//!
//! The report ([`report`]) is the newest difference per host under the
//! current shadow version: which hosts the candidate would fail (or pass)
//! and why.

use serde::{Deserialize, Serialize};
use verifier_lib::decision::Decision;
use verifier_lib::policy::Policy;

use crate::state::AppState;
use crate::store::{PolicySlot, ShadowDifference, Store, StoreError};

/// Record `shadow` against the applied decision `active` when their
/// verdicts differ. A failure to record is logged, never the client's.
pub async fn record(
    st: &AppState,
    active: &Decision,
    active_policy: &Policy,
    shadow: &Decision,
    shadow_policy: &Policy,
    now: i64,
) {
    let Some(d) = difference(active, active_policy, shadow, shadow_policy, now) else {
        return;
    };
    tracing::info!(host_id = %d.host_id, active = %d.active_verdict, shadow = %d.shadow_verdict, shadow_hash = %d.shadow_hash, "shadow policy verdict differs");
    if let Err(e) = st.store.insert_shadow_difference(&d).await {
        tracing::error!(host_id = %d.host_id, error = %e, "recording a shadow difference failed");
    }
}

/// The difference between the two decisions, if their verdicts differ.
pub fn difference(
    active: &Decision,
    active_policy: &Policy,
    shadow: &Decision,
    shadow_policy: &Policy,
    now: i64,
) -> Option<ShadowDifference> {
    if active.verdict == shadow.verdict {
        return None;
    }
    let json = |d: &Decision| serde_json::to_string(&d.failures).unwrap_or_else(|_| "[]".into());
    Some(ShadowDifference {
        host_id: active.host_id.clone(),
        at: now,
        active_hash: active_policy.hash_hex(),
        shadow_hash: shadow_policy.hash_hex(),
        active_verdict: active.verdict.as_str().to_owned(),
        shadow_verdict: shadow.verdict.as_str().to_owned(),
        active_failures: json(active),
        shadow_failures: json(shadow),
    })
}

/// One host in the report: its newest difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostDifference {
    pub host_id: String,
    pub at: i64,
    pub active_verdict: String,
    pub shadow_verdict: String,
    /// The rules that failed under each policy (`rule` of each failure).
    pub active_rules: Vec<String>,
    pub shadow_rules: Vec<String>,
    /// The failures under each policy, in full.
    pub active_failures: serde_json::Value,
    pub shadow_failures: serde_json::Value,
}

/// Which hosts the shadow policy decides differently, newest difference
/// per host first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The active policy's hash; `None`: no active policy.
    pub active_hash: Option<String>,
    /// The shadow policy's hash; `None`: no shadow policy loaded.
    pub shadow_hash: Option<String>,
    pub shadow_policy_id: Option<String>,
    /// Hosts the candidate would fail (contraindicated under the shadow,
    /// affirming under the active policy).
    pub would_fail: usize,
    /// Hosts the candidate would pass that the active policy fails.
    pub would_pass: usize,
    pub hosts: Vec<HostDifference>,
    /// Whether older rows were left out (`limit` reached).
    pub truncated: bool,
}

/// Build the report from at most `limit` stored rows.
pub async fn report(store: &Store, limit: u32) -> Result<ShadowReport, StoreError> {
    let active = store.policy_in(PolicySlot::Active).await?;
    let shadow = store.policy_in(PolicySlot::Shadow).await?;
    let Some(shadow) = shadow else {
        return Ok(ShadowReport {
            active_hash: active.map(|a| a.hash),
            shadow_hash: None,
            shadow_policy_id: None,
            would_fail: 0,
            would_pass: 0,
            hosts: Vec::new(),
            truncated: false,
        });
    };
    let limit = limit.clamp(1, crate::store::policy::MAX_POLICY_ROWS);
    let rows = store.shadow_differences(&shadow.hash, limit).await?;
    let truncated = rows.len() >= limit as usize;
    let active_hash = active.map(|a| a.hash);
    let hosts = newest_per_host(rows, active_hash.as_deref());
    let would_fail = hosts
        .iter()
        .filter(|h| h.shadow_verdict == "contraindicated")
        .count();
    Ok(ShadowReport {
        active_hash,
        shadow_hash: Some(shadow.hash),
        shadow_policy_id: Some(shadow.policy_id),
        would_fail,
        would_pass: hosts.len() - would_fail,
        hosts,
        truncated,
    })
}

/// The newest difference of each host among `rows` (newest first) that
/// were recorded against the active policy `active_hash`, by host id: rows
/// recorded under another active policy are history, not this comparison.
pub fn newest_per_host(
    rows: Vec<ShadowDifference>,
    active_hash: Option<&str>,
) -> Vec<HostDifference> {
    let mut hosts: Vec<HostDifference> = Vec::new();
    for row in rows {
        if Some(row.active_hash.as_str()) != active_hash
            || hosts.iter().any(|h| h.host_id == row.host_id)
        {
            continue;
        }
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
        let (af, sf) = (parse(&row.active_failures), parse(&row.shadow_failures));
        hosts.push(HostDifference {
            host_id: row.host_id,
            at: row.at,
            active_rules: rules(&af),
            shadow_rules: rules(&sf),
            active_verdict: row.active_verdict,
            shadow_verdict: row.shadow_verdict,
            active_failures: af,
            shadow_failures: sf,
        });
    }
    hosts.sort_by(|a, b| a.host_id.cmp(&b.host_id));
    hosts
}

/// The `rule` names of a JSON failure array.
fn rules(failures: &serde_json::Value) -> Vec<String> {
    failures
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("rule").and_then(|r| r.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
