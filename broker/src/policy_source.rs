//! The active policy: loaded from a file, reloaded when the file changes.
//! A policy that fails to parse on reload is refused and the previous one
//! stays active (logged loudly); at start-up a bad policy is fatal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use verifier_lib::policy::{Policy, PolicyError};

/// Why the policy file could not be used.
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
}

/// A shared handle to the active policy.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    path: PathBuf,
    current: Arc<RwLock<Arc<Policy>>>,
}

impl PolicyHandle {
    /// Load the policy at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyLoadError> {
        let policy = read(path)?;
        tracing::info!(policy_id = %policy.id, hash = %policy.hash_hex(), "policy loaded");
        Ok(Self {
            path: path.to_owned(),
            current: Arc::new(RwLock::new(Arc::new(policy))),
        })
    }

    /// The active policy.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-read the file; replace the active policy if it changed and is valid.
    /// Returns the new policy when it was replaced.
    pub fn reload(&self) -> Result<Option<Arc<Policy>>, PolicyLoadError> {
        let policy = read(&self.path)?;
        if policy.hash == self.current().hash {
            return Ok(None);
        }
        let policy = Arc::new(policy);
        match self.current.write() {
            Ok(mut g) => *g = Arc::clone(&policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&policy),
        }
        tracing::warn!(policy_id = %policy.id, hash = %policy.hash_hex(), "policy changed and activated");
        Ok(Some(policy))
    }

    /// Re-read the file and return the policy it holds if it differs from
    /// the active one (without activating it).
    pub fn candidate(&self) -> Result<Option<Policy>, PolicyLoadError> {
        let policy = read(&self.path)?;
        if policy.hash == self.current().hash {
            return Ok(None);
        }
        Ok(Some(policy))
    }

    /// Make `policy` the active policy.
    pub fn activate(&self, policy: Arc<Policy>) {
        match self.current.write() {
            Ok(mut g) => *g = Arc::clone(&policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&policy),
        }
        tracing::warn!(policy_id = %policy.id, hash = %policy.hash_hex(), "policy changed and activated");
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Poll the file's modification time every `interval` and reload on change.
    pub fn spawn_watcher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = mtime(&this.path);
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let now = mtime(&this.path);
                if now == last {
                    continue;
                }
                last = now;
                if let Err(e) = this.reload() {
                    tracing::error!(error = %e, "policy reload refused; previous policy stays active");
                }
            }
        })
    }
}

fn read(path: &Path) -> Result<Policy, PolicyLoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyLoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    Policy::parse_toml(&text).map_err(|source| PolicyLoadError::Invalid {
        path: path.to_owned(),
        source,
    })
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
