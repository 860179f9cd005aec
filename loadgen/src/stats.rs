//! What a run records per operation (enroll, attest, token): latency
//! (HdrHistogram, microseconds, measured from when the request was *due*,
//! so a slow broker shows as latency, not as a lower offered rate),
//! successes, errors by the broker's stable error code, and how many
//! operations were offered.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The operations a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `enroll/start` → credential activation → `enroll/finish`.
    Enroll,
    /// `challenge` → quote → `attest`.
    Attest,
    /// `challenge` → quote over the request → `tokens`, token verified.
    Token,
    /// `challenge` → TPM2_Certify of a new request key → `request-keys`.
    RegisterKey,
    /// `challenge` → request-key signature → `tokens/signed`, token verified.
    SignedToken,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Enroll => "enroll",
            Operation::Attest => "attest",
            Operation::Token => "token",
            Operation::RegisterKey => "regkey",
            Operation::SignedToken => "signed",
        }
    }
}

/// Latencies above this are recorded as this (one minute).
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Debug)]
struct OpStats {
    latency: Histogram<u64>,
    offered: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    skipped: BTreeMap<String, u64>,
}

/// Thread-safe recorder of one run.
#[derive(Debug)]
pub struct Recorder {
    /// An empty histogram with the bounds every operation uses.
    empty: Histogram<u64>,
    ops: Mutex<BTreeMap<Operation, OpStats>>,
}

impl Recorder {
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        Ok(Self {
            // 3 significant digits from 1 µs to a minute: a few tens of KB.
            empty: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
            ops: Mutex::new(BTreeMap::new()),
        })
    }

    fn with<R>(&self, op: Operation, f: impl FnOnce(&mut OpStats) -> R) -> R {
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = ops.entry(op).or_insert_with(|| OpStats {
            latency: self.empty.clone(),
            offered: 0,
            ok: 0,
            errors: BTreeMap::new(),
            skipped: BTreeMap::new(),
        });
        f(stats)
    }

    /// One operation was due (counted whether or not it could be sent).
    pub fn offered(&self, op: Operation) {
        self.with(op, |s| s.offered += 1);
    }

    /// A successful operation and its latency from when it was due.
    pub fn ok(&self, op: Operation, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.with(op, |s| {
            s.ok += 1;
            s.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
        });
    }

    /// A failed operation, by error code.
    pub fn error(&self, op: Operation, code: &str) {
        self.with(op, |s| *s.errors.entry(code.to_owned()).or_insert(0) += 1);
    }

    /// An operation that was due but never sent because the load generator
    /// itself was short (its host still busy with an earlier exchange, no
    /// idle host): not a broker outcome, reported apart from errors.
    pub fn skipped(&self, op: Operation, reason: &str) {
        self.with(op, |s| {
            *s.skipped.entry(reason.to_owned()).or_insert(0) += 1
        });
    }

    /// The summary of everything recorded, over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Vec<OpSummary> {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        ops.iter()
            .map(|(&op, s)| {
                let q = |p: f64| {
                    if s.latency.is_empty() {
                        0.0
                    } else {
                        s.latency.value_at_quantile(p) as f64 / 1000.0
                    }
                };
                let errors: u64 = s.errors.values().sum();
                OpSummary {
                    operation: op,
                    offered: s.offered,
                    ok: s.ok,
                    errors,
                    errors_by_code: s.errors.clone(),
                    skipped: s.skipped.values().sum(),
                    skipped_by_reason: s.skipped.clone(),
                    offered_per_sec: s.offered as f64 / secs,
                    achieved_per_sec: s.ok as f64 / secs,
                    p50_ms: q(0.5),
                    p90_ms: q(0.9),
                    p99_ms: q(0.99),
                    p999_ms: q(0.999),
                    max_ms: s.latency.max() as f64 / 1000.0,
                }
            })
            .collect()
    }
}

/// One operation's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpSummary {
    pub operation: Operation,
    pub offered: u64,
    pub ok: u64,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Due but not sent: the load generator was short (see [`Recorder::skipped`]).
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub offered_per_sec: f64,
    pub achieved_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_errors_and_rates() {
        let r = Recorder::new().unwrap();
        for ms in 1..=100u64 {
            r.offered(Operation::Token);
            r.ok(Operation::Token, Duration::from_millis(ms));
        }
        r.offered(Operation::Token);
        r.error(Operation::Token, "nonce_reused");
        r.offered(Operation::Token);
        r.skipped(Operation::Token, "loadgen_no_idle_host");
        let s = r.summary(Duration::from_secs(10));
        assert_eq!(s.len(), 1);
        let t = &s[0];
        assert_eq!((t.offered, t.ok, t.errors, t.skipped), (102, 100, 1, 1));
        assert_eq!(t.skipped_by_reason["loadgen_no_idle_host"], 1);
        assert_eq!(t.errors_by_code["nonce_reused"], 1);
        assert!((t.p50_ms - 50.0).abs() < 0.1, "{}", t.p50_ms);
        assert!((t.p99_ms - 99.0).abs() < 0.1, "{}", t.p99_ms);
        assert!((t.achieved_per_sec - 10.0).abs() < 1e-9);
    }
}
