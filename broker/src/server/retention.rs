//! The retention task (`[retention]`): every `interval_secs`, delete the
//! rows no decision needs any more (`StateStore::delete_expired`). Audit
//! leaves are never deleted; rows they refer to may be.

use std::time::Duration;

use crate::state::AppState;
use crate::store::{RetentionCutoffs, RetentionReport, StoreError};

/// One retention pass at the state's current time.
pub async fn run_once(st: &AppState) -> Result<RetentionReport, StoreError> {
    let now = st.now();
    let cutoffs = RetentionCutoffs {
        now,
        appraisals_before: now.saturating_sub(st.config.retention.appraisal_secs()),
    };
    let report = st.store.delete_expired(&cutoffs).await?;
    tracing::info!(
        used_nonces = report.used_nonces,
        enrollments = report.enrollments,
        appraisals = report.appraisals,
        "retention pass"
    );
    Ok(report)
}

/// Run a pass at start and then every `retention.interval_secs`.
pub fn spawn(st: &AppState) {
    let st = st.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(
            st.config.retention.interval_secs.max(1),
        ));
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&st).await {
                tracing::error!(error = %e, "retention pass failed");
            }
        }
    });
}
