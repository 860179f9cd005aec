//! A host's page: its status, the last appraisal's failures in words, its
//! evidence kind and keys, its TPM clock baseline, its status timeline, its
//! tokens, its history (reboots, clock refusals, revocations) and recent
//! decisions.

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
use crate::store::{HostEvent, HostEvents, HostStatus, TokenQuery};

/// Audit leaves the host page searches for the host's decisions.
pub const DECISION_LEAVES: u64 = 2000;
/// Decisions, tokens and events shown on a host page.
pub const HOST_ROWS: usize = 50;
/// Status changes on the host's timeline.
pub const TIMELINE_ROWS: u32 = 100;

/// One status the host was in, on its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSpan {
    /// The status entered.
    pub status: &'static str,
    pub since: String,
    /// How long it lasted ("for 3 min"), or "current".
    pub held: String,
    /// Why, as recorded with the change.
    pub reason: String,
}

/// The status a status-change event entered (its kind; `reinstated` goes
/// back to `enrolled`).
fn entered(kind: &str) -> Option<HostStatus> {
    match kind {
        "reinstated" => Some(HostStatus::Enrolled),
        k => HostStatus::from_name(k),
    }
}

/// Status-change events (oldest first) as spans, newest first: each lasts
/// until the next change.
pub fn timeline(events: &[HostEvent], now: i64) -> Vec<StatusSpan> {
    let changes: Vec<(&HostEvent, HostStatus)> = events
        .iter()
        .filter_map(|e| entered(&e.kind).map(|s| (e, s)))
        .collect();
    let mut spans: Vec<StatusSpan> = changes
        .iter()
        .enumerate()
        .map(|(i, (e, status))| {
            let held = match changes.get(i + 1) {
                Some((next, _)) => format!("for {}", duration(next.at.saturating_sub(e.at))),
                None => format!("current, {}", duration(now.saturating_sub(e.at))),
            };
            StatusSpan {
                status: status.as_str(),
                since: timestamp(e.at),
                held,
                reason: e.detail.clone(),
            }
        })
        .collect();
    spans.reverse();
    spans
}

/// A number of seconds in words ("42 s", "3 min", "5 h", "2 days").
fn duration(secs: i64) -> String {
    match secs.max(0) {
        d @ 0..=119 => format!("{d} s"),
        d @ 120..=7199 => format!("{} min", d / 60),
        d @ 7200..=172_799 => format!("{} h", d / 3600),
        d => format!("{} days", d / 86_400),
    }
}

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
    /// The TPM clock baseline, in words.
    clock: String,
    timeline: Vec<StatusSpan>,
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
        .tokens(&TokenQuery {
            host: Some(&id),
            ..TokenQuery::newest(now, u32::try_from(HOST_ROWS).unwrap_or(50))
        })
        .await?
        .iter()
        .map(|t| TokenRow::of(t, now))
        .collect();
    let events: Vec<EventRow> = st
        .store
        .host_events(&id, HostEvents::All, u32::try_from(HOST_ROWS).unwrap_or(50))
        .await?
        .iter()
        .rev()
        .map(|e| EventRow {
            time: timestamp(e.at),
            kind: e.kind.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    let changes = st
        .store
        .host_events(&id, HostEvents::StatusChanges, TIMELINE_ROWS)
        .await?;
    let clock = match st.store.host_clock(&id).await? {
        Some(c) => format!(
            "reset count {}, restart count {}, clock {} ms (the baseline the next quote must not go back from)",
            c.reset_count, c.restart_count, c.clock
        ),
        None => "no baseline yet (set by the next accepted TPM quote)".into(),
    };
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
        clock,
        timeline: timeline(&changes, now),
        tokens,
        events,
        decisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: i64, kind: &str, detail: &str) -> HostEvent {
        HostEvent {
            at,
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn timeline_spans_last_until_the_next_change_newest_first() {
        let events = [
            event(100, "enrolled", "enrollment accepted"),
            event(160, "trusted", "passing appraisal (was enrolled)"),
            event(400, "failed", "failing appraisal (was trusted)"),
            event(9000, "revoked", "PCR 16 changed"),
            event(9100, "reinstated", "revoked -> enrolled"),
        ];
        let spans = timeline(&events, 9200);
        let shape: Vec<(&str, &str)> = spans.iter().map(|s| (s.status, s.held.as_str())).collect();
        assert_eq!(
            shape,
            vec![
                ("enrolled", "current, 100 s"),
                ("revoked", "for 100 s"),
                ("failed", "for 2 h"),
                ("trusted", "for 4 min"),
                ("enrolled", "for 60 s"),
            ]
        );
        assert_eq!(spans[2].reason, "failing appraisal (was trusted)");
        assert!(timeline(&[], 5).is_empty());
    }
}
