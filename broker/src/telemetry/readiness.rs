//! The broker's readiness report and the cache that bounds how often it is
//! computed (the checks themselves run in the `/readyz` handler, which has
//! the broker's state).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

/// How long one readiness result is reused.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// `/readyz` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// The checks that failed (empty when ready), by name.
    pub failing: Vec<&'static str>,
    /// Every check by name: `ok` or what is wrong (never a secret: no
    /// URL, no token).
    pub checks: BTreeMap<&'static str, String>,
}

impl Readiness {
    /// A report from each check's result by name (`Err` says what is wrong).
    pub fn from_checks(checks: BTreeMap<&'static str, Result<(), String>>) -> Self {
        let failing = checks
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(name, _)| *name)
            .collect::<Vec<_>>();
        Readiness {
            status: if failing.is_empty() {
                "ready"
            } else {
                "not_ready"
            },
            failing,
            checks: checks
                .into_iter()
                .map(|(name, r)| (name, r.err().unwrap_or_else(|| "ok".to_owned())))
                .collect(),
        }
    }

    /// Every check passed.
    pub fn ready(&self) -> bool {
        self.failing.is_empty()
    }
}

/// The last readiness result, shared by the probes (see [`READY_CACHE`]).
#[derive(Debug, Default, Clone)]
pub struct ReadinessCache(Arc<tokio::sync::Mutex<Option<(Instant, Readiness)>>>);

impl ReadinessCache {
    /// The cached report while it is younger than [`READY_CACHE`], else a
    /// fresh one from `check`. One check runs at a time: concurrent callers
    /// wait for it and share its result.
    pub async fn get_or_check<F, Fut>(&self, check: F) -> Readiness
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Readiness>,
    {
        let mut cached = self.0.lock().await;
        match cached.as_ref() {
            Some((at, report)) if at.elapsed() < READY_CACHE => report.clone(),
            _ => {
                let report = check().await;
                *cached = Some((Instant::now(), report.clone()));
                report
            }
        }
    }
}
