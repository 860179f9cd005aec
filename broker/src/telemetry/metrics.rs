//! The broker's Prometheus metrics. Each [`Metrics`] owns its own recorder
//! (no global one), so several brokers in one process (tests) keep separate
//! counts. Handlers record through the methods below; gauges that mirror
//! the store (hosts by status, the status list) are refreshed when
//! `/metrics` is scraped ([`Metrics::render`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use verifier_lib::api::AppraisalResponse;

use crate::audit::AuditInstruments;
use crate::state::AppState;
use crate::store::HostStatus;
use crate::tee::snp::kds::KdsStats;

const APPRAISALS: &str = "writ_appraisals_total";
const APPRAISAL_FAILURES: &str = "writ_appraisal_failures_total";
const TOKENS_MINTED: &str = "writ_tokens_minted_total";
const TOKENS_REVOKED: &str = "writ_tokens_revoked_total";
const HOSTS: &str = "writ_hosts";
const HTTP_DURATION: &str = "writ_http_request_duration_seconds";
const API_ERRORS: &str = "writ_api_errors_total";
const DATABASE_ERRORS: &str = "writ_database_errors_total";
const STATUS_VERSION: &str = "writ_status_list_version";
const STATUS_AGE: &str = "writ_status_list_age_seconds";
const AUDIT_SIZE: &str = "writ_audit_tree_size";
const KDS_FETCHES: &str = "writ_kds_fetches_total";
const KDS_CACHE_HITS: &str = "writ_kds_cache_hits_total";
const AUDIT_BATCH: &str = "writ_audit_batch_entries";
const AUDIT_APPEND: &str = "writ_audit_append_duration_seconds";

/// Every metric the broker exports: name, type, unit and help text.
pub const METRIC_NAMES: &[(&str, &str, &str)] = &[
    (
        APPRAISALS,
        "counter",
        "Appraisals decided, by evidence kind (tpm, snp) and result (affirming, contraindicated)",
    ),
    (
        APPRAISAL_FAILURES,
        "counter",
        "Failed policy rules in appraisals, by rule",
    ),
    (
        TOKENS_MINTED,
        "counter",
        "Execution tokens minted, by kind (tpm, snp, derived, signed)",
    ),
    (
        TOKENS_REVOKED,
        "counter",
        "Tokens revoked (descendants included), by cause (operator, appraisal, stale)",
    ),
    (
        HOSTS,
        "gauge",
        "Hosts by status, read from the store at each scrape",
    ),
    (
        HTTP_DURATION,
        "histogram",
        "Request latency by matched route template, method and status",
    ),
    (API_ERRORS, "counter", "Error answers by stable error code"),
    (
        DATABASE_ERRORS,
        "counter",
        "Requests that failed on a storage error",
    ),
    (
        STATUS_VERSION,
        "gauge",
        "Version of the published status list",
    ),
    (STATUS_AGE, "gauge", "Age of the published status list"),
    (AUDIT_SIZE, "gauge", "Leaves in the committed audit tree"),
    (KDS_FETCHES, "counter", "AMD KDS requests by result (fetched, error_status, unreachable) and requests not made (busy, negative_cached)"),
    (KDS_CACHE_HITS, "counter", "SEV-SNP certificates and CRLs served without KDS, by source (bundle, cache, stale_cache)"),
    (
        AUDIT_BATCH,
        "histogram",
        "Decisions committed per audit batch transaction (group commit)",
    ),
    (
        AUDIT_APPEND,
        "histogram",
        "Time from queueing a decision's audit entry to its answer (queue wait and batch commit)",
    ),
];

/// Buckets of `writ_audit_batch_entries` (up to `audit.max_batch`).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Why tokens are revoked (`writ_tokens_revoked_total{cause}`).
const REVOCATION_CAUSES: [&str; 3] = ["operator", "appraisal", "stale"];

/// Every host status, so that a status with no host reads 0.
const STATUSES: [HostStatus; 5] = [
    HostStatus::Enrolled,
    HostStatus::Trusted,
    HostStatus::Failed,
    HostStatus::Revoked,
    HostStatus::Stale,
];

/// Latency buckets (seconds): 1 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// One broker's metrics registry.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, SharedString::from(v.to_string())))
        .collect()
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // The buckets are constant and non-empty, so this does not fail;
        // if it did, histograms would render as summaries.
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(AUDIT_BATCH.into()), BATCH_BUCKETS)
            }) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, kind, help) in METRIC_NAMES {
            let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
            let (name, help) = ((*name).into(), SharedString::const_str(help));
            match *kind {
                "counter" => recorder.describe_counter(name, unit, help),
                "gauge" => recorder.describe_gauge(name, unit, help),
                _ => recorder.describe_histogram(name, unit, help),
            }
        }
        let metrics = Metrics { recorder, handle };
        // Counters read 0 before their first event (absent
        // would look like a broker that does not export them).
        metrics.counter(DATABASE_ERRORS, &[], 0);
        for cause in REVOCATION_CAUSES {
            metrics.counter(TOKENS_REVOKED, &[("cause", cause)], 0);
        }
        metrics
    }

    fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
        self.recorder
            .register_counter(&Key::from_parts(name, labels(pairs)), &METADATA)
            .increment(by);
    }

    fn gauge(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels(pairs)), &METADATA)
            .set(value);
    }

    /// One decided appraisal (`kind`: `tpm` or `snp`) and its failed rules.
    pub fn appraisal(&self, kind: &str, response: &AppraisalResponse) {
        self.counter(
            APPRAISALS,
            &[("kind", kind), ("result", &response.verdict)],
            1,
        );
        for failure in &response.failures {
            let rule = serde_json::to_value(failure)
                .ok()
                .and_then(|v| v.get("rule").and_then(|r| r.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            self.counter(APPRAISAL_FAILURES, &[("rule", &rule)], 1);
        }
    }

    /// The histograms the audit log reports its appends to.
    pub fn audit_instruments(&self) -> AuditInstruments {
        let histogram = |name: &'static str| {
            self.recorder
                .register_histogram(&Key::from_name(name), &METADATA)
        };
        AuditInstruments {
            batch_entries: histogram(AUDIT_BATCH),
            append_seconds: histogram(AUDIT_APPEND),
        }
    }

    /// A token minted (`kind`: `tpm`, `snp`, `derived`, `signed`).
    pub fn token_minted(&self, kind: &str) {
        self.counter(TOKENS_MINTED, &[("kind", kind)], 1);
    }

    /// Tokens revoked by one state change; `cause`: `operator` (an
    /// operator action), `appraisal` (a failing appraisal), `stale` (no
    /// passing attestation in time).
    pub fn tokens_revoked(&self, cause: &str, count: u64) {
        self.counter(TOKENS_REVOKED, &[("cause", cause)], count);
    }

    /// One answered request: `route` is the matched route template
    /// (`/v1/hosts/{id}`), never the raw path.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.recorder
            .register_histogram(
                &Key::from_parts(
                    HTTP_DURATION,
                    labels(&[("route", route), ("method", method), ("status", &status)]),
                ),
                &METADATA,
            )
            .record(seconds);
    }

    /// An error answer with its stable code.
    pub fn api_error(&self, code: &str) {
        self.counter(API_ERRORS, &[("code", code)], 1);
        if code == "storage_error" {
            self.counter(DATABASE_ERRORS, &[], 1);
        }
    }

    /// Copy the KDS client's counts (all 0 without SEV-SNP).
    fn kds(&self, st: &AppState) {
        let none = KdsStats::default();
        let k = st.snp.as_ref().map_or(&none, |s| s.kds.stats());
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let fetches = [
            ("fetched", n(&k.fetched)),
            ("error_status", n(&k.error_status)),
            ("unreachable", n(&k.unreachable)),
            ("busy", n(&k.busy)),
            ("negative_cached", n(&k.negative_cached)),
        ];
        let hits = [
            ("bundle", n(&k.bundle_hits)),
            ("cache", n(&k.cache_hits)),
            ("stale_cache", n(&k.stale_cache_hits)),
        ];
        let series = fetches
            .iter()
            .map(|(result, v)| (KDS_FETCHES, ("result", *result), *v))
            .chain(
                hits.iter()
                    .map(|(source, v)| (KDS_CACHE_HITS, ("source", *source), *v)),
            );
        for (name, label, value) in series {
            self.recorder
                .register_counter(&Key::from_parts(name, labels(&[label])), &METADATA)
                .absolute(value);
        }
    }

    /// Refresh the gauges that mirror the store and render the exposition
    /// text. A gauge that cannot be read now keeps its last value, and the
    /// failure counts as a database error.
    pub async fn render(&self, st: &AppState) -> String {
        match st.store.hosts().await {
            Ok(hosts) => {
                let mut by_status: BTreeMap<&'static str, u64> =
                    STATUSES.iter().map(|s| (s.as_str(), 0)).collect();
                for h in &hosts {
                    *by_status.entry(h.status.as_str()).or_default() += 1;
                }
                for (status, n) in by_status {
                    self.gauge(HOSTS, &[("status", status)], n as f64);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: reading hosts");
                self.counter(DATABASE_ERRORS, &[], 1);
            }
        }
        let now = st.now();
        match st
            .governance
            .current(&st.store, &st.signing_key, &st.config, now)
            .await
        {
            Ok(p) => {
                self.gauge(STATUS_VERSION, &[], p.version as f64);
                self.gauge(STATUS_AGE, &[], now.saturating_sub(p.issued_at) as f64);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: publishing the status list");
                self.counter(DATABASE_ERRORS, &[], 1);
            }
        }
        self.kds(st);
        let size = st.audit.view().tree.len();
        self.gauge(AUDIT_SIZE, &[], size as f64);
        self.handle.run_upkeep();
        self.handle.render()
    }
}
