//! Continuous governance: the host state machine's time-driven and
//! clock-driven transitions, and publication of the signed status list.
//!
//! ```text
//!            passing appraisal            failing appraisal / clock rollback
//! enrolled ─────────────────────▶ trusted ───────────────────────────────▶ failed
//!    ▲                            │  ▲  ▲                                    │
//!    │ reinstate (operator)       │  │  └──────── passing appraisal ─────────┘
//!    │                  no pass   │  │ passing appraisal
//! revoked ◀── revoke ── (any)     ▼  │
//!            (operator)          stale
//! ```
//!
//! Every transition is an audited decision: its state change and its audit
//! leaf commit in one transaction (`store::audit::StateChange`). Every
//! transition out of `trusted` revokes the host's tokens in that same
//! transaction; every revocation bumps the status-list version, which the
//! watcher task publishes to `/v1/status/stream` subscribers.

pub mod config;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use verifier_lib::appraisal::{TpmAppraisal, Verdict};
use verifier_lib::host_clock::{ClockState, ClockTransition, RebootEvidence};
use verifier_lib::policy::Failure;
use verifier_lib::pop::ReplayCache;
use verifier_lib::status::{Cti, StatusList};

pub use config::{HostsConfig, LineageConfig, StatusConfig};

use crate::api::ApiError;
use crate::audit::{decisions as audit_log, AppendError};
use crate::state::AppState;
use crate::store::audit::{EntryError, StateChange};
use crate::store::{HostRecord, HostStatus};

/// A signed status list as served.
#[derive(Debug, Clone)]
pub struct Published {
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
    pub entries: usize,
    pub bytes: Arc<Vec<u8>>,
    pub etag: String,
}

/// Shared governance state of one broker.
#[derive(Debug)]
pub struct Governance {
    version_tx: watch::Sender<u64>,
    cache: Mutex<Option<Arc<Published>>>,
    poke: Notify,
    /// Proofs of possession seen by `/v1/tokens/derive`.
    pub replay: Mutex<ReplayCache>,
}

impl Governance {
    pub fn new(lineage: &LineageConfig) -> Self {
        Governance {
            version_tx: watch::Sender::new(0),
            cache: Mutex::new(None),
            poke: Notify::new(),
            replay: Mutex::new(ReplayCache::new(lineage.replay_cache_entries)),
        }
    }

    /// Ask the watcher to look for a new status version now.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Receive every new status version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// The current signed status list (re-signed when the version changed
    /// or the cached one passed half its lifetime).
    pub async fn published(&self, st: &AppState) -> Result<Arc<Published>, ApiError> {
        let now = st.now();
        let ttl = st.config.status.ttl_secs;
        let version = st.store.status_version().await?;
        let cached = self.cache.lock().ok().and_then(|c| c.clone());
        if let Some(p) = cached {
            if p.version == version
                && now < p.issued_at.saturating_add(ttl / 2)
                && now >= p.issued_at
            {
                return Ok(p);
            }
        }
        // Tokens expired beyond the verifiers' leeway need no listing.
        let cutoff = now.saturating_sub(st.config.tokens.leeway_secs.max(0));
        let (version, ctis) = st.store.revoked_ctis(cutoff).await?;
        let ids: Vec<Cti> = ctis
            .iter()
            .filter_map(|c| Cti::try_from(c.as_slice()).ok())
            .collect();
        let list = StatusList::new(
            st.config.tokens.issuer.clone(),
            version,
            now,
            now.saturating_add(ttl),
            ids,
        );
        let bytes = list
            .sign(&st.signing_key)
            .map_err(|e| ApiError::internal("status_sign_failed", e))?;
        let p = Arc::new(Published {
            version,
            issued_at: now,
            expires_at: list.expires_at,
            entries: list.revoked().len(),
            bytes: Arc::new(bytes),
            etag: format!("\"{version}-{now}\""),
        });
        if let Ok(mut c) = self.cache.lock() {
            *c = Some(Arc::clone(&p));
        }
        Ok(p)
    }
}

/// Start the stale-host sweeper and the status-version watcher.
pub fn spawn_background(st: &AppState) {
    let sweeper = st.clone();
    tokio::spawn(async move {
        let period = sweeper.config.hosts.sweep_period();
        loop {
            tokio::time::sleep(period).await;
            sweep_stale(&sweeper).await;
        }
    });
    let watcher = st.clone();
    tokio::spawn(async move {
        let period = Duration::from_millis(watcher.config.status.poll_interval_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = watcher.governance.poke.notified() => {}
            }
            match watcher.store.status_version().await {
                Ok(v) => {
                    watcher.governance.version_tx.send_if_modified(|cur| {
                        let changed = *cur != v;
                        *cur = v;
                        changed
                    });
                }
                Err(e) => tracing::warn!(error = %e, "status version check failed"),
            }
        }
    });
}

/// Mark hosts without a recent passing attestation stale (revoking their
/// tokens), each as its own audited decision. Returns the hosts changed.
pub async fn sweep_stale(st: &AppState) -> Vec<String> {
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
        let leaf = audit_log::host_state_changed(
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

/// Whether the evidence carried a TCG event log that the appraisal
/// checked against the quote without finding fault: a boot log of the
/// current boot (its replay gives the quoted PCRs).
pub fn verified_boot_log(sent: bool, appraisal: &TpmAppraisal) -> bool {
    sent && appraisal.authentic()
        && !appraisal.failures.iter().any(|f| {
            matches!(
                f,
                Failure::EventLogPcrMismatch { .. }
                    | Failure::EventLogPcrNotQuoted { .. }
                    | Failure::LogMissing { .. }
            ) || matches!(f, Failure::EvidenceRejected { stage, .. } if *stage == verifier_lib::policy::EvidenceStage::Eventlog)
        })
}

/// Reboot and rollback detection for an authenticated quote: the clock
/// triple must follow the host's baseline. A refusal becomes a failure of
/// the appraisal (so the host fails and gets no token). `boot_log_sent`:
/// the evidence carried an event log.
pub async fn after_quote(
    st: &AppState,
    host: &HostRecord,
    boot_log_sent: bool,
    mut appraisal: TpmAppraisal,
) -> Result<TpmAppraisal, ApiError> {
    let new_boot_log = verified_boot_log(boot_log_sent, &appraisal);
    let Some(q) = &appraisal.quote else {
        return Ok(appraisal);
    };
    let boot = RebootEvidence {
        boot_log_required: st.config.hosts.boot_log_required,
        new_boot_log,
    };
    let current = ClockState::from(&q.clock_info);
    match st
        .store
        .check_and_record_clock(&host.id, current, boot, st.now())
        .await?
    {
        Ok(ClockTransition::Rebooted) => {
            tracing::info!(host_id = %host.id, reset_count = current.reset_count, "host rebooted");
        }
        Ok(_) => {}
        Err(f) => {
            tracing::warn!(host_id = %host.id, failure = %f, "TPM clock check failed");
            appraisal.failures.push(f);
            appraisal.verdict = Verdict::Contraindicated;
        }
    }
    Ok(appraisal)
}

/// The host behind a token request that carries no fresh quote (derived
/// tokens): it must be trusted with a recent passing attestation.
pub async fn require_fresh_host(st: &AppState, host_id: &str) -> Result<HostRecord, ApiError> {
    let host = st
        .store
        .host(host_id)
        .await?
        .ok_or_else(|| ApiError::forbidden("unknown_host", format!("no host {host_id}")))?;
    let refuse = |code: &'static str, what: &str| {
        Err(ApiError::forbidden(
            code,
            format!("host {host_id} is {what}; it gets no tokens"),
        ))
    };
    match host.status {
        HostStatus::Trusted => {}
        HostStatus::Revoked => return refuse("host_revoked", "revoked"),
        HostStatus::Failed => return refuse("host_failed", "failed"),
        HostStatus::Stale => return refuse("host_stale", "stale"),
        HostStatus::Enrolled => return refuse("host_not_attested", "not attested"),
    }
    let now = st.now();
    let cutoff = now.saturating_sub(st.config.hosts.stale_after_secs());
    if host.last_attested_at.is_none_or(|t| t < cutoff) {
        sweep_stale(st).await;
        return refuse("host_stale", "stale");
    }
    Ok(host)
}
