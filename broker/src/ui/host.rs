//! A host's page: its status, the last appraisal's failures in words, its
//! evidence kind and keys, its tokens, its history and recent decisions.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::actions::url_segment;
use super::audit_pages::{decision_host, recent_leaves, LeafRow};
use super::describe::{describe, Explanation};
use super::fleet::failures_of;
use super::session::SignedIn;
use super::tokens::TokenRow;
use super::{age, html, timestamp, Layout, UiError};
use crate::state::AppState;
use crate::store::HostStatus;

/// Audit leaves the host page searches for the host's decisions.
pub const DECISION_LEAVES: u64 = 2000;
/// Decisions, tokens and events shown on a host page.
pub const HOST_ROWS: usize = 50;

/// A host event as shown.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub time: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "ui/host.html")]
struct HostPage {
    layout: Layout,
    href: String,
    status: &'static str,
    revoked: bool,
    enrolled: String,
    last_attested: String,
    policy_id: String,
    evidence: &'static str,
    ek_cert: String,
    ak_name: String,
    failures: Vec<Explanation>,
    tokens: Vec<TokenRow>,
    events: Vec<EventRow>,
    decisions: Vec<LeafRow>,
}

/// `GET /ui/hosts/{id}`.
pub async fn page(
    State(st): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let now = st.now();
    let h = st.store.host(&id).await?.ok_or_else(|| UiError::NotFound {
        what: "host",
        id: id.clone(),
    })?;
    let snp = st.store.snp_host(&id).await?.is_some();
    let tpm = !h.ak_public.is_empty();
    let evidence = match (tpm, snp) {
        (true, true) => "TPM quote and SEV-SNP report",
        (true, false) => "TPM quote",
        (false, true) => "SEV-SNP report",
        (false, false) => "none recorded",
    };
    let failures = if h.status == HostStatus::Failed {
        failures_of(&h).iter().map(describe).collect()
    } else {
        Vec::new()
    };
    let tokens = st
        .store
        .recent_tokens(Some(&id), u32::try_from(HOST_ROWS).unwrap_or(50))
        .await?
        .iter()
        .map(|t| TokenRow::of(t, now))
        .collect();
    let events: Vec<EventRow> = st
        .store
        .host_events(&id)
        .await?
        .iter()
        .rev()
        .take(HOST_ROWS)
        .map(|e| EventRow {
            time: timestamp(e.at),
            kind: e.kind.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    let decisions = recent_leaves(&st, DECISION_LEAVES)
        .await?
        .iter()
        .rev()
        .filter(|(_, l)| decision_host(&l.decision) == Some(id.as_str()))
        .take(HOST_ROWS)
        .map(|(i, l)| LeafRow::of(*i, l))
        .collect();
    html(&HostPage {
        layout: Layout::new(format!("Host {id}"), &who, "fleet").live(&st),
        href: format!("/ui/hosts/{}", url_segment(&id)),
        status: h.status.as_str(),
        revoked: h.status == HostStatus::Revoked,
        enrolled: timestamp(h.enrolled_at),
        last_attested: h.last_attested_at.map_or_else(
            || "never".into(),
            |t| format!("{} ({})", age(now, t), timestamp(t)),
        ),
        policy_id: h.policy_id.clone().unwrap_or_else(|| "none yet".into()),
        evidence,
        ek_cert: if h.ek_cert_digest.is_empty() {
            "no EK certificate was presented".into()
        } else {
            format!(
                "verified at enrollment; SHA-256 {}",
                hex::encode(&h.ek_cert_digest)
            )
        },
        ak_name: hex::encode(&h.ak_name),
        failures,
        tokens,
        events,
        decisions,
    })
}
