//! The policy page: the policy in force (from the store's active version),
//! its groups, workloads and document text, the activation history, and
//! the shadow candidate with the hosts it would decide differently.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::session::SignedIn;
use super::{html, timestamp, Layout, UiError};
use crate::decision::shadow;
use crate::state::AppState;
use crate::store::policy::PolicySlot;

/// Largest policy document the page shows.
pub const MAX_POLICY_TEXT: usize = 1 << 20;
/// Activations listed.
const HISTORY_ROWS: u32 = 20;
/// Shadow differences read.
const SHADOW_ROWS: u32 = 200;

/// One row of the activation history.
struct ActivationRow {
    at: String,
    policy_id: String,
    hash: String,
    previous: String,
}

/// One host the shadow candidate decides differently.
struct ShadowRow {
    host: String,
    href: String,
    active: String,
    shadow: String,
    rules: String,
}

/// The shadow candidate, when one is loaded.
struct ShadowView {
    policy_id: String,
    hash: String,
    would_fail: usize,
    would_pass: usize,
    rows: Vec<ShadowRow>,
}

#[derive(Template)]
#[template(path = "ui/policy.html")]
struct PolicyPage {
    layout: Layout,
    id: String,
    hash: String,
    groups: Vec<(String, String)>,
    workloads: Vec<(String, usize)>,
    default_lifetime_secs: u32,
    max_lifetime_secs: u32,
    /// The active version's document, when it is the policy in force here.
    text: Option<String>,
    history: Vec<ActivationRow>,
    shadow: Option<ShadowView>,
}

/// `GET /ui/policy`.
pub async fn page(State(st): State<AppState>, who: SignedIn) -> Result<Response, UiError> {
    let p = st.policy.current();
    let hash = p.hash_hex();
    // The document as stored; shown only when it is what this broker
    // decides under (a broker polls the pointer, so it may lag a moment).
    let text = st
        .store
        .policy_in(PolicySlot::Active)
        .await?
        .filter(|v| v.hash == hash && v.body.len() <= MAX_POLICY_TEXT)
        .map(|v| v.body);
    let history = st
        .store
        .policy_history(HISTORY_ROWS)
        .await?
        .into_iter()
        .map(|a| ActivationRow {
            at: timestamp(a.at),
            policy_id: a.policy_id,
            hash: a.hash,
            previous: a.previous_hash.unwrap_or_else(|| "none".into()),
        })
        .collect();
    let report = shadow::report(&st.store, SHADOW_ROWS).await?;
    let shadow = match (report.shadow_hash, report.shadow_policy_id) {
        (Some(hash), Some(policy_id)) => Some(ShadowView {
            policy_id,
            hash,
            would_fail: report.would_fail,
            would_pass: report.would_pass,
            rows: report
                .hosts
                .into_iter()
                .map(|d| ShadowRow {
                    href: format!("/ui/hosts/{}", super::actions::url_segment(&d.host_id)),
                    host: d.host_id,
                    active: d.active_verdict,
                    shadow: d.shadow_verdict,
                    rules: d.shadow_rules.join(", "),
                })
                .collect(),
        }),
        _ => None,
    };
    html(&PolicyPage {
        layout: Layout::new("Policy", &who, "policy"),
        id: p.id.clone(),
        hash,
        groups: p
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.hosts.join(", ")))
            .collect(),
        workloads: p
            .workloads
            .iter()
            .map(|w| (w.name.clone(), w.digests.len()))
            .collect(),
        default_lifetime_secs: p.default_lifetime_secs,
        max_lifetime_secs: p.max_lifetime_secs,
        text,
        history,
        shadow,
    })
}
