//! Continuous governance: the host state machine and the publication of the
//! signed status list. The transitions themselves are decisions
//! (`verifier_lib::decision`, applied by `crate::decision`); this module
//! publishes their effect on tokens.
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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use verifier_lib::pop::{ReplayCache, ReplayLimits};
use verifier_lib::status::{Cti, StatusError, StatusList};
use verifier_lib::token::SigningKey;

use crate::config::{Config, LineageConfig};
use crate::store::{Store, StoreError};

/// Why the status list could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing the status list: {0}")]
    Sign(#[from] StatusError),
}

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
            replay: Mutex::new(ReplayCache::new(ReplayLimits {
                max_entries: lineage.replay_cache_entries,
                max_entries_per_key: lineage.replay_cache_entries_per_key,
            })),
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
    pub async fn published(
        &self,
        store: &Store,
        key: &SigningKey,
        config: &Config,
        now: i64,
    ) -> Result<Arc<Published>, PublishError> {
        let ttl = config.status.ttl_secs;
        let resign_after = config.status.resign_secs.min(ttl / 2).max(1);
        let version = store.status_version().await?;
        let cached = self.cache.lock().ok().and_then(|c| c.clone());
        if let Some(p) = cached {
            if p.version == version
                && now < p.issued_at.saturating_add(resign_after)
                && now >= p.issued_at
            {
                return Ok(p);
            }
        }
        // Tokens expired beyond the verifiers' leeway need no listing.
        let cutoff = now.saturating_sub(config.tokens.leeway_secs.max(0));
        let (version, ctis) = store.revoked_ctis(cutoff).await?;
        let ids: Vec<Cti> = ctis
            .iter()
            .filter_map(|c| Cti::try_from(c.as_slice()).ok())
            .collect();
        let list = StatusList::new(
            config.tokens.issuer.clone(),
            version,
            now,
            now.saturating_add(ttl),
            ids,
        );
        let bytes = list.sign(key)?;
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

    /// Watch the store's status-list version (revocations made by other
    /// brokers or by the sweeper) every `poll`, and whenever poked.
    pub fn spawn_watcher(self: &Arc<Self>, store: Store, poll: Duration) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = me.poke.notified() => {}
                }
                match store.status_version().await {
                    Ok(v) => {
                        me.version_tx.send_if_modified(|cur| {
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
}
