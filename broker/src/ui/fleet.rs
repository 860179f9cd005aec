//! The fleet overview: hosts by status, failing hosts first, the policy and
//! status list in force, and a chart of appraisals over time.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use verifier_lib::audit::{Decision, Verdict};
use verifier_lib::policy::Failure;

use super::actions::url_segment;
use super::audit_pages::recent_leaves;
use super::describe::describe;
use super::session::SignedIn;
use super::{age, html, Layout, UiError};
use crate::state::AppState;
use crate::store::{HostRecord, HostStatus};

/// Most audit leaves the chart reads.
pub const CHART_LEAVES: u64 = 2000;
/// Bars of the chart.
pub const CHART_BUCKETS: usize = 24;
const CHART_HEIGHT: u64 = 100;
const BAR_WIDTH: u64 = 20;

/// One host in the overview table.
#[derive(Debug, Clone)]
pub struct HostRow {
    pub id: String,
    /// The host page's address.
    pub href: String,
    pub status: &'static str,
    pub last_attested: String,
    /// The first failure of the last failed appraisal, in words.
    pub reason: String,
}

/// A bar of the chart: affirming appraisals below, failures stacked above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub x: u64,
    pub ok: u64,
    pub failed: u64,
    pub ok_y: u64,
    pub ok_h: u64,
    pub failed_y: u64,
    pub failed_h: u64,
}

/// Appraisals and failures over time, as SVG geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub bars: Vec<Bar>,
    pub width: u64,
    pub height: u64,
    pub bucket_secs: i64,
    pub total_ok: u64,
    pub total_failed: u64,
}

/// Bucket appraisal times (`(time, failed)`) into [`CHART_BUCKETS`] bars
/// ending at `now`, each at least a minute wide.
pub fn chart(now: i64, appraisals: &[(i64, bool)]) -> Chart {
    let oldest = appraisals.iter().map(|a| a.0).min().unwrap_or(now);
    let span = now.saturating_sub(oldest).max(0) + 1;
    let buckets = CHART_BUCKETS as i64;
    let bucket_secs = ((span + buckets - 1) / buckets).max(60);
    let start = now - bucket_secs * buckets;
    let mut counts = vec![(0u64, 0u64); CHART_BUCKETS];
    for (t, failed) in appraisals {
        if *t <= start || *t > now {
            continue;
        }
        let i = usize::try_from((t - start - 1) / bucket_secs).unwrap_or(0);
        if let Some(c) = counts.get_mut(i.min(CHART_BUCKETS - 1)) {
            if *failed {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
        }
    }
    let max = counts.iter().map(|c| c.0 + c.1).max().unwrap_or(0).max(1);
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, (ok, failed))| {
            let ok_h = ok * CHART_HEIGHT / max;
            let failed_h = failed * CHART_HEIGHT / max;
            Bar {
                x: i as u64 * (BAR_WIDTH + 4),
                ok: *ok,
                failed: *failed,
                ok_y: CHART_HEIGHT - ok_h,
                ok_h,
                failed_y: CHART_HEIGHT - ok_h - failed_h,
                failed_h,
            }
        })
        .collect();
    Chart {
        bars,
        width: CHART_BUCKETS as u64 * (BAR_WIDTH + 4),
        height: CHART_HEIGHT,
        bucket_secs,
        total_ok: counts.iter().map(|c| c.0).sum(),
        total_failed: counts.iter().map(|c| c.1).sum(),
    }
}

/// Where a status sorts: failing hosts first.
fn rank(s: HostStatus) -> u8 {
    match s {
        HostStatus::Failed => 0,
        HostStatus::Stale => 1,
        HostStatus::Revoked => 2,
        HostStatus::Enrolled => 3,
        HostStatus::Trusted => 4,
    }
}

/// The failures stored with a host's last failed appraisal.
pub fn failures_of(h: &HostRecord) -> Vec<Failure> {
    h.last_failure
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "ui/fleet.html")]
struct Overview {
    layout: Layout,
    counts: Vec<(&'static str, usize)>,
    hosts: Vec<HostRow>,
    policy_id: String,
    policy_hash: String,
    status_epoch: u64,
    status_version: u64,
    status_age: String,
    chart: Chart,
}

/// `GET /ui`.
pub async fn overview(State(st): State<AppState>, who: SignedIn) -> Result<Response, UiError> {
    let now = st.now();
    let mut hosts = st.store.hosts().await?;
    hosts.sort_by(|a, b| {
        rank(a.status)
            .cmp(&rank(b.status))
            .then(a.last_attested_at.cmp(&b.last_attested_at))
            .then(a.id.cmp(&b.id))
    });
    let counts = [
        HostStatus::Trusted,
        HostStatus::Failed,
        HostStatus::Stale,
        HostStatus::Revoked,
        HostStatus::Enrolled,
    ]
    .iter()
    .map(|s| (s.as_str(), hosts.iter().filter(|h| h.status == *s).count()))
    .collect();
    let rows = hosts
        .iter()
        .map(|h| HostRow {
            id: h.id.clone(),
            href: format!("/ui/hosts/{}", url_segment(&h.id)),
            status: h.status.as_str(),
            last_attested: h
                .last_attested_at
                .map_or_else(|| "never".into(), |t| age(now, t)),
            reason: match (h.status, failures_of(h).first()) {
                (HostStatus::Failed, Some(f)) => describe(f).summary,
                _ => String::new(),
            },
        })
        .collect();
    let policy = st.policy.current();
    let published = st
        .governance
        .current(&st.store, &st.signing_key, &st.config, now)
        .await
        .map_err(|e| UiError::Status {
            reason: e.to_string(),
        })?;
    let appraisals: Vec<(i64, bool)> = recent_leaves(&st, CHART_LEAVES)
        .await?
        .iter()
        .filter_map(|(_, leaf)| match &leaf.decision {
            Decision::Appraisal { verdict, .. } => Some((leaf.time, *verdict == Verdict::Fail)),
            _ => None,
        })
        .collect();
    html(&Overview {
        layout: Layout::new("Fleet", &who, "fleet").live(&st),
        counts,
        hosts: rows,
        policy_id: policy.id.clone(),
        policy_hash: policy.hash_hex(),
        status_epoch: published.epoch,
        status_version: published.version,
        status_age: age(now, published.issued_at),
        chart: chart(now, &appraisals),
    })
}

/// `GET /ui/live`: the audit log's size, which the live script compares
/// with the size the page was rendered at.
pub async fn live(State(st): State<AppState>, _who: SignedIn) -> impl IntoResponse {
    st.audit.view().tree.len().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_buckets_appraisals_and_failures() {
        let now = 10_000;
        // One-minute buckets (the span is short): the last bar holds what
        // happened in the last minute.
        let c = chart(now, &[(now, false), (now - 10, true), (now - 61, false)]);
        assert_eq!(c.bucket_secs, 60);
        assert_eq!(c.bars.len(), CHART_BUCKETS);
        let last = &c.bars[CHART_BUCKETS - 1];
        assert_eq!((last.ok, last.failed), (1, 1));
        // The tallest bar (2 appraisals) fills the height.
        assert_eq!((last.ok_h, last.failed_h), (50, 50));
        assert_eq!(last.failed_y, 0);
        let before = &c.bars[CHART_BUCKETS - 2];
        assert_eq!((before.ok, before.failed), (1, 0));
        assert_eq!((c.total_ok, c.total_failed), (2, 1));
    }

    #[test]
    fn chart_widens_buckets_to_cover_the_span() {
        let now = 1_000_000;
        let c = chart(now, &[(now - 24 * 3600, true), (now, false)]);
        assert_eq!(c.bucket_secs, 3600 + 1);
        assert_eq!((c.total_ok, c.total_failed), (1, 1));
        assert_eq!(c.bars[0].failed, 1);
        let empty = chart(now, &[]);
        assert_eq!((empty.total_ok, empty.total_failed), (0, 0));
        assert!(empty.bars.iter().all(|b| b.ok_h == 0 && b.failed_h == 0));
    }
}
