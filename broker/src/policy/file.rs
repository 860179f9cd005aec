//! A policy file as an import source: at start, and whenever the file
//! changes (single-broker set-ups), its text is validated, stored as a
//! version and activated unless it already is the active one. A file that
//! does not parse is refused and the active policy stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use verifier_lib::policy::Policy;

use super::{PolicyHandle, PolicyLoadError};
use crate::audit::policy::{activate, import, ActivateError, Activation, ActivationLog};
use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::store::Store;

/// Why a policy file was not imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileImportError {
    #[error(transparent)]
    Load(#[from] PolicyLoadError),
    #[error("policy {path}: {source}")]
    Activate {
        path: PathBuf,
        source: ActivateError,
    },
}

/// Read and validate the policy file at `path` (nothing is stored).
pub fn read(path: &Path) -> Result<(String, Policy), PolicyLoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyLoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let policy = Policy::parse_toml(&text).map_err(|source| PolicyLoadError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok((text, policy))
}

/// Import the file at `path` and activate it unless it is already active.
pub async fn import_file(
    log: ActivationLog<'_>,
    store: &Store,
    path: &Path,
    now: i64,
) -> Result<Activation, FileImportError> {
    let (text, _) = read(path)?;
    let at = |source| FileImportError::Activate {
        path: path.to_owned(),
        source,
    };
    let (version, _) = import(store, &text, None, now).await.map_err(at)?;
    activate(log, store, &version, now).await.map_err(at)
}

/// Poll the file's modification time every `interval`; a changed, valid
/// file is imported, activated (logged) and then read back into `policy`.
pub fn spawn_watcher(
    audit: AuditLog,
    policy: PolicyHandle,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = mtime(&path);
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let now = mtime(&path);
            if now == last {
                continue;
            }
            let store = policy.store().clone();
            match import_file(ActivationLog::Writer(&audit), &store, &path, clock.now()).await {
                Ok(_) => last = now,
                Err(e @ FileImportError::Load(_)) => {
                    // Retried when the file changes again.
                    tracing::error!(error = %e, "policy file refused; the active policy stays");
                    last = now;
                }
                Err(e) => {
                    // Not logged, so not activated; retried on the next tick.
                    tracing::error!(error = %e, "policy file refused; the active policy stays");
                }
            }
            if let Err(e) = policy.refresh().await {
                tracing::error!(error = %e, "policy refresh failed; the cached policy stays in force");
            }
        }
    })
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
