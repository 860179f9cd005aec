//! The active policy lives in the store (`store::policy`): every broker
//! reads the version the `active` pointer names, caches it, and polls the
//! pointers every `policy.poll_interval_ms` to follow activations made by
//! other brokers or by `writ-broker policy activate`. The `shadow` pointer
//! names a candidate every appraisal is also decided under, for the record
//! (`crate::decision::shadow`). A policy file is an import source
//! ([`file`]); activation is an audited decision (`crate::audit::policy`).
//!
//! A stored version that no longer parses (a newer broker's format read by
//! an older one) is refused and the cached policy stays in force. When
//! `policy.signing_keys` is set, a stored version is loaded only if its
//! stored signature verifies by one of those keys (checked again at every
//! load, not only at import); otherwise too the cached policy stays.

pub mod file;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use verifier_lib::policy::signing::{PolicySignatureError, PolicySigners};
use verifier_lib::policy::{Policy, PolicyError};

use crate::store::{PolicyPointers, PolicyVersion, Store, StoreError};

/// Why the policy could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyLoadError {
    #[error("reading policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {path}: {source}")]
    Invalid { path: PathBuf, source: PolicyError },
    #[error("stored policy version {version_id} ({hash}): {source}")]
    StoredInvalid {
        version_id: i64,
        hash: String,
        source: PolicyError,
    },
    #[error("stored policy version {version_id} ({hash}) refused: {source}")]
    StoredSignature {
        version_id: i64,
        hash: String,
        source: PolicySignatureError,
    },
    #[error("policy.signing_keys: {path}: {reason}")]
    SigningKey { path: PathBuf, reason: String },
    #[error("the store names policy version {version_id}, which it does not hold")]
    UnknownVersion { version_id: i64 },
    #[error("no active policy: set policy.file, or run `writ-broker policy activate FILE`")]
    NoActivePolicy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A policy read from a stored version.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub version_id: i64,
    pub policy: Arc<Policy>,
}

#[derive(Debug)]
struct Cached {
    active: Loaded,
    shadow: Option<Loaded>,
}

/// A shared handle to the active (and shadow) policy, as stored.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    store: Store,
    signers: Arc<PolicySigners>,
    cached: Arc<RwLock<Arc<Cached>>>,
}

/// The operator keys of `policy.signing_keys` (empty: signing not required).
pub fn signers(paths: &[PathBuf]) -> Result<PolicySigners, PolicyLoadError> {
    let mut keys = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| PolicyLoadError::SigningKey {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // Each file on its own, so an error names it.
        PolicySigners::from_spki(std::slice::from_ref(&bytes)).map_err(|e| {
            PolicyLoadError::SigningKey {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        keys.push(bytes);
    }
    PolicySigners::from_spki(&keys).map_err(|e| PolicyLoadError::SigningKey {
        path: PathBuf::new(),
        reason: e.to_string(),
    })
}

impl PolicyHandle {
    /// Read the active (and shadow) version from `store`; there must be an
    /// active one, signed by one of `signers` when they require it.
    pub async fn from_store(store: Store, signers: PolicySigners) -> Result<Self, PolicyLoadError> {
        let pointers = store.policy_pointers().await?;
        let active = match pointers.active {
            Some(id) => load(&store, &signers, id).await?,
            None => return Err(PolicyLoadError::NoActivePolicy),
        };
        let shadow = match pointers.shadow {
            Some(id) => Some(load(&store, &signers, id).await?),
            None => None,
        };
        tracing::info!(policy_id = %active.policy.id, hash = %active.policy.hash_hex(), version = active.version_id, "active policy loaded from the store");
        Ok(Self {
            store,
            signers: Arc::new(signers),
            cached: Arc::new(RwLock::new(Arc::new(Cached { active, shadow }))),
        })
    }

    fn cached(&self) -> Arc<Cached> {
        match self.cached.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The active policy.
    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(&self.cached().active.policy)
    }

    /// The shadow (candidate) policy, if one is loaded.
    pub fn shadow(&self) -> Option<Arc<Policy>> {
        self.cached().shadow.as_ref().map(|s| Arc::clone(&s.policy))
    }

    /// The store the versions come from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The operator keys policies must be signed by (none: unsigned).
    pub fn signers(&self) -> &PolicySigners {
        &self.signers
    }

    /// Read the pointers; load whatever version changed. Returns whether the
    /// active or shadow policy changed. On error the cached policies stay.
    pub async fn refresh(&self) -> Result<bool, PolicyLoadError> {
        let pointers = self.store.policy_pointers().await?;
        let cached = self.cached();
        let now = PolicyPointers {
            active: Some(cached.active.version_id),
            shadow: cached.shadow.as_ref().map(|s| s.version_id),
        };
        if pointers == now || pointers.active.is_none() {
            return Ok(false);
        }
        let active = match pointers.active {
            Some(id) if id != cached.active.version_id => {
                load(&self.store, &self.signers, id).await?
            }
            _ => cached.active.clone(),
        };
        let shadow = match (pointers.shadow, &cached.shadow) {
            (None, _) => None,
            (Some(id), Some(s)) if s.version_id == id => Some(s.clone()),
            (Some(id), _) => Some(load(&self.store, &self.signers, id).await?),
        };
        if active.version_id != cached.active.version_id {
            tracing::warn!(policy_id = %active.policy.id, hash = %active.policy.hash_hex(), version = active.version_id, "policy activated");
        }
        match &shadow {
            Some(s) if now.shadow != Some(s.version_id) => {
                tracing::warn!(policy_id = %s.policy.id, hash = %s.policy.hash_hex(), version = s.version_id, "shadow policy loaded");
            }
            None if now.shadow.is_some() => tracing::warn!("shadow policy cleared"),
            _ => {}
        }
        let next = Arc::new(Cached { active, shadow });
        match self.cached.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(true)
    }

    /// Poll the store's pointers every `interval`.
    pub fn spawn_refresher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = this.refresh().await {
                    tracing::error!(error = %e, "policy refresh failed; the cached policy stays in force");
                }
            }
        })
    }
}

/// Parse a stored version.
pub fn parse_version(v: &PolicyVersion) -> Result<Policy, PolicyLoadError> {
    Policy::parse_toml(&v.body).map_err(|source| PolicyLoadError::StoredInvalid {
        version_id: v.id,
        hash: v.hash.clone(),
        source,
    })
}

/// Load a stored version; when `signers` require signatures, its stored
/// signature must verify over its body (the appraisals then name the
/// signer).
async fn load(
    store: &Store,
    signers: &PolicySigners,
    version_id: i64,
) -> Result<Loaded, PolicyLoadError> {
    let v = store
        .policy_version(version_id)
        .await?
        .ok_or(PolicyLoadError::UnknownVersion { version_id })?;
    let policy = signers
        .check(&v.body, v.signature.as_deref())
        .map_err(|source| match source {
            PolicySignatureError::Invalid(source) => PolicyLoadError::StoredInvalid {
                version_id: v.id,
                hash: v.hash.clone(),
                source,
            },
            source => PolicyLoadError::StoredSignature {
                version_id: v.id,
                hash: v.hash.clone(),
                source,
            },
        })?;
    Ok(Loaded {
        version_id,
        policy: Arc::new(policy),
    })
}
