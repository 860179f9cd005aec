//! The policy page: the policy in force (from the store's active version),
//! its groups, workloads and document text, the activation history — each
//! activation with the line diff from the version it replaced and the
//! hosts whose verdict it changed (the differences recorded while it was
//! the shadow candidate) — and the current shadow candidate with the hosts
//! it would decide differently.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::line_diff::{diff, DiffLine};
use super::session::SignedIn;
use super::{html, timestamp, Layout, UiError};
use crate::decision::shadow::{self, HostDifference};
use crate::state::AppState;
use crate::store::policy::{PolicyActivation, PolicySlot, PolicyVersion};
use crate::store::{Store, StoreError};

/// Largest policy document the page shows.
pub const MAX_POLICY_TEXT: usize = 1 << 20;
/// Activations listed.
const HISTORY_ROWS: u32 = 20;
/// Shadow differences read (for the candidate, and for each activation).
const SHADOW_ROWS: u32 = 200;
/// Largest version the history diffs (larger ones are named, not diffed).
const MAX_DIFF_TEXT: usize = 64 * 1024;

/// One activation of the history.
struct ActivationRow {
    at: String,
    policy_id: String,
    hash: String,
    previous: String,
    /// The diff from the replaced version, or why there is none.
    diff: Result<Vec<DiffLine>, String>,
    /// Hosts whose verdict the activation changed, or why it is not known.
    affected: Result<Vec<ShadowRow>, String>,
}

/// One host the shadow candidate decides differently.
struct ShadowRow {
    host: String,
    href: String,
    active: String,
    shadow: String,
    rules: String,
}

impl ShadowRow {
    fn of(d: HostDifference) -> ShadowRow {
        ShadowRow {
            href: format!("/ui/hosts/{}", super::actions::url_segment(&d.host_id)),
            host: d.host_id,
            active: d.active_verdict,
            shadow: d.shadow_verdict,
            rules: d.shadow_rules.join(", "),
        }
    }
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
    let history = history(&st.store).await?;
    let report = shadow::report(&st.store, SHADOW_ROWS).await?;
    let shadow = match (report.shadow_hash, report.shadow_policy_id) {
        (Some(hash), Some(policy_id)) => Some(ShadowView {
            policy_id,
            hash,
            would_fail: report.would_fail,
            would_pass: report.would_pass,
            rows: report.hosts.into_iter().map(ShadowRow::of).collect(),
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

/// A version by id, read once per page.
async fn version<'a>(
    store: &Store,
    cache: &'a mut HashMap<i64, Option<PolicyVersion>>,
    id: i64,
) -> Result<Option<&'a PolicyVersion>, StoreError> {
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(id) {
        slot.insert(store.policy_version(id).await?);
    }
    Ok(cache.get(&id).and_then(Option::as_ref))
}

/// The newest activations with their diffs and affected hosts.
async fn history(store: &Store) -> Result<Vec<ActivationRow>, StoreError> {
    let mut versions = HashMap::new();
    let mut rows = Vec::new();
    for a in store.policy_history(HISTORY_ROWS).await? {
        let new_text = version(store, &mut versions, a.version_id)
            .await?
            .map(|v| v.body.clone());
        let old_text = match a.previous_version_id {
            Some(id) => version(store, &mut versions, id)
                .await?
                .map(|v| v.body.clone()),
            None => Some(String::new()),
        };
        let diff = match (old_text, new_text) {
            (Some(o), Some(n)) if o.len() <= MAX_DIFF_TEXT && n.len() <= MAX_DIFF_TEXT => {
                diff(&o, &n).map_err(|e| e.to_string())
            }
            (Some(_), Some(_)) => Err(format!(
                "a version is larger than {} KiB; compare them with `writ-broker policy show`",
                MAX_DIFF_TEXT / 1024
            )),
            _ => Err("a version is no longer stored".into()),
        };
        let affected = affected(store, &a).await?;
        rows.push(ActivationRow {
            at: timestamp(a.at),
            policy_id: a.policy_id,
            hash: a.hash,
            previous: a.previous_hash.unwrap_or_else(|| "none".into()),
            diff,
            affected,
        });
    }
    Ok(rows)
}

/// The hosts an activation changed: the differences recorded while the
/// version was the shadow candidate next to the version it replaced.
async fn affected(
    store: &Store,
    a: &PolicyActivation,
) -> Result<Result<Vec<ShadowRow>, String>, StoreError> {
    let (Some(since), Some(previous)) = (a.shadowed_since, a.previous_hash.as_deref()) else {
        return Ok(Err(match a.previous_hash {
            None => "the first activation: no earlier verdicts to differ from".into(),
            Some(_) => {
                "not known: the version was activated without being evaluated in shadow first"
                    .into()
            }
        }));
    };
    let rows = store.shadow_differences(&a.hash, SHADOW_ROWS).await?;
    let hosts = shadow::newest_per_host(rows, Some(previous));
    if hosts.is_empty() {
        return Ok(Err(format!(
            "none: no verdict differed while it was the shadow candidate (since {})",
            timestamp(since)
        )));
    }
    Ok(Ok(hosts.into_iter().map(ShadowRow::of).collect()))
}
