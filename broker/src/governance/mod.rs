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
//!
//! Status lists are Token Status Lists (draft-ietf-oauth-status-list, CWT
//! form): each token has a slot (epoch, index) from the store's allocator;
//! an epoch's list is built from the store alone and signed with the token
//! key, so every broker of a fleet serves the same statuses. A new epoch
//! opens when a list is full or old (`[status]`); an epoch retires once all
//! its tokens have expired.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use verifier_lib::pop::{ReplayCache, ReplayLimits};
use verifier_lib::status::{Bits, StatusArray, StatusError, StatusList, INVALID};
use verifier_lib::token::{SigningKey, StatusRef};

use crate::config::{Config, LineageConfig};
use crate::store::{StatusEpoch, StatusSlot, Store, StoreError};

/// Why the status list could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing the status list: {0}")]
    Sign(#[from] StatusError),
}

/// One epoch's signed status list as served.
#[derive(Debug, Clone)]
pub struct Published {
    pub epoch: u64,
    /// The list's `sub` (what tokens of this epoch carry).
    pub uri: String,
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
    /// Revoked tokens listed.
    pub entries: usize,
    pub bytes: Arc<Vec<u8>>,
    pub etag: String,
}

/// Shared governance state of one broker.
#[derive(Debug)]
pub struct Governance {
    version_tx: watch::Sender<u64>,
    /// Signed lists by epoch.
    cache: Mutex<BTreeMap<u64, Arc<Published>>>,
    poke: Notify,
    /// Proofs of possession seen by `/v1/tokens/derive`.
    pub replay: Mutex<ReplayCache>,
}

impl Governance {
    pub fn new(lineage: &LineageConfig) -> Self {
        Governance {
            version_tx: watch::Sender::new(0),
            cache: Mutex::new(BTreeMap::new()),
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

    /// A status-list slot for a new token, and the `status` claim naming it.
    pub async fn allocate(
        store: &Store,
        config: &Config,
        now: i64,
    ) -> Result<(StatusSlot, StatusRef), StoreError> {
        let slot = store
            .allocate_status_slot(config.status.epoch_plan(), now)
            .await?;
        let claim = StatusRef {
            idx: slot.idx,
            uri: config.status_list_uri(slot.epoch),
        };
        Ok((slot, claim))
    }

    /// The live epochs (the current one first), from the store.
    async fn live_epochs(
        store: &Store,
        config: &Config,
        now: i64,
    ) -> Result<(u64, Vec<StatusEpoch>), StoreError> {
        // Tokens expired beyond the verifiers' leeway need no list.
        let cutoff = now.saturating_sub(config.tokens.leeway_secs.max(0));
        store
            .live_status_epochs(config.status.epoch_plan(), cutoff, now)
            .await
    }

    /// The current epoch's signed list.
    pub async fn current(
        &self,
        store: &Store,
        key: &SigningKey,
        config: &Config,
        now: i64,
    ) -> Result<Arc<Published>, PublishError> {
        let (current, _) = Self::live_epochs(store, config, now).await?;
        self.published(store, key, config, current, now)
            .await?
            .ok_or(PublishError::Store(StoreError::Corrupt {
                what: "status_allocator.epoch",
                value: current.to_string(),
            }))
    }

    /// Every live epoch's signed list, ascending by epoch.
    pub async fn live(
        &self,
        store: &Store,
        key: &SigningKey,
        config: &Config,
        now: i64,
    ) -> Result<Vec<Arc<Published>>, PublishError> {
        let (_, live) = Self::live_epochs(store, config, now).await?;
        let mut out = Vec::with_capacity(live.len());
        for e in live {
            if let Some(p) = self.published(store, key, config, e.epoch, now).await? {
                out.push(p);
            }
        }
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|epoch, _| out.iter().any(|p| p.epoch == *epoch));
        }
        Ok(out)
    }

    /// Epoch `epoch`'s signed list, re-signed when the status version
    /// changed or the cached one passed its re-signing age; `None` for an
    /// epoch never opened or retired (all its tokens expired).
    pub async fn published_live(
        &self,
        store: &Store,
        key: &SigningKey,
        config: &Config,
        epoch: u64,
        now: i64,
    ) -> Result<Option<Arc<Published>>, PublishError> {
        let (_, live) = Self::live_epochs(store, config, now).await?;
        if !live.iter().any(|e| e.epoch == epoch) {
            return Ok(None);
        }
        self.published(store, key, config, epoch, now).await
    }

    async fn published(
        &self,
        store: &Store,
        key: &SigningKey,
        config: &Config,
        epoch: u64,
        now: i64,
    ) -> Result<Option<Arc<Published>>, PublishError> {
        let ttl = config.status.ttl_secs;
        let resign_after = config.status.resign_secs.min(ttl / 2).max(1);
        let version = store.status_version().await?;
        let cached = self.cache.lock().ok().and_then(|c| c.get(&epoch).cloned());
        if let Some(p) = cached {
            if p.version == version
                && now < p.issued_at.saturating_add(resign_after)
                && now >= p.issued_at
            {
                return Ok(Some(p));
            }
        }
        // Built from the store only (no clock, no broker state), so every
        // broker serves the same statuses for an epoch.
        let Some(st) = store.epoch_statuses(epoch).await? else {
            return Ok(None);
        };
        let capacity = usize::try_from(st.epoch.capacity).map_err(|_| StoreError::Corrupt {
            what: "status_epochs.capacity",
            value: st.epoch.capacity.to_string(),
        })?;
        let mut statuses = StatusArray::new(Bits::One, capacity);
        for idx in &st.revoked {
            statuses.set(*idx, INVALID)?;
        }
        let list = StatusList {
            uri: config.status_list_uri(epoch),
            version: st.version,
            issued_at: now,
            expires_at: now.saturating_add(ttl),
            ttl: u64::try_from(resign_after).ok(),
            statuses,
        };
        let bytes = list.sign(key)?;
        let p = Arc::new(Published {
            epoch,
            uri: list.uri,
            version: st.version,
            issued_at: now,
            expires_at: list.expires_at,
            entries: st.revoked.len(),
            bytes: Arc::new(bytes),
            etag: format!("\"{epoch}-{}-{now}\"", st.version),
        });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(epoch, Arc::clone(&p));
        }
        Ok(Some(p))
    }

    /// Watch the store's status-list version (revocations made by other
    /// brokers or by the sweeper) every `poll`, and whenever poked.
    /// With PostgreSQL, a `LISTEN` connection pokes the watcher as soon as
    /// any broker commits a revocation.
    pub fn spawn_watcher(self: &Arc<Self>, store: Store, poll: Duration) {
        let poker = Arc::clone(self);
        let pushed = store.spawn_status_listener(Arc::new(move || poker.poke()));
        tracing::debug!(pushed, "status change notifications");
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
