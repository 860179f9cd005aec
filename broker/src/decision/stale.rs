//! Staleness: a trusted host without a passing attestation for longer than
//! the configured window becomes `stale`, which revokes its tokens. Each host
//! is its own audited decision; the store applies it only while the host is
//! still a candidate (it may have attested since it was read).

use crate::audit::{leaves, AppendError};
use crate::state::AppState;
use crate::store::audit::{EntryError, StateChange};
use crate::store::HostStatus;

/// Mark hosts without a recent passing attestation stale. Returns the hosts
/// changed.
pub async fn sweep(st: &AppState) -> Vec<String> {
    let now = st.now();
    let cutoff = now.saturating_sub(st.config.hosts.stale_after_secs());
    let candidates = match st.store.stale_candidates(cutoff).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "stale-host sweep failed");
            return Vec::new();
        }
    };
    let mut changed = Vec::new();
    for id in candidates {
        let leaf = leaves::host_state_changed(
            &id,
            HostStatus::Trusted,
            HostStatus::Stale,
            &format!(
                "{}; its tokens are revoked",
                crate::store::stale_reason(cutoff)
            ),
            now,
        );
        let change = StateChange::MarkStale {
            host_id: id.clone(),
            cutoff,
            at: now,
        };
        match st.audit.apply(change, vec![leaf]).await {
            Ok(a) => {
                st.metrics.tokens_revoked("stale", a.tokens_revoked);
                tracing::warn!(host_id = %id, tokens = a.tokens_revoked, "host is stale: no passing attestation in time; tokens revoked");
                changed.push(id);
            }
            // It attested (or was revoked) since the candidates were read.
            Err(AppendError::Entry(EntryError::Refused(_))) => {}
            Err(e) => tracing::error!(host_id = %id, error = %e, "could not mark host stale"),
        }
    }
    if !changed.is_empty() {
        st.governance.poke();
    }
    changed
}

/// Runs [`sweep`] every `hosts.sweep_period()`.
pub fn spawn(st: &AppState) {
    let st = st.clone();
    tokio::spawn(async move {
        let period = st.config.hosts.sweep_period();
        loop {
            tokio::time::sleep(period).await;
            sweep(&st).await;
        }
    });
}
