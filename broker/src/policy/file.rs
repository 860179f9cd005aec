//! A policy file as an import source: at start, and whenever the file
//! changes (single-broker set-ups), its text is validated, stored as a
//! version and activated unless it already is the active one. A file that
//! does not parse is refused and the active policy stays. When signatures
//! are required, the file's detached signature is `FILE.sig` (what
//! `writ-broker policy sign` writes) and goes through the same checks as
//! `writ-broker policy activate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use verifier_lib::policy::signing::PolicySigners;
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

/// The detached signature of the policy file at `path`: `path` + `.sig`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

/// Import the file at `path` (with its `.sig` when `signers` require one)
/// and activate it unless it is already active.
pub async fn import_file(
    log: ActivationLog<'_>,
    store: &Store,
    signers: &PolicySigners,
    path: &Path,
    now: i64,
) -> Result<Activation, FileImportError> {
    let (text, _) = read(path)?;
    let at = |source| FileImportError::Activate {
        path: path.to_owned(),
        source,
    };
    let signature = if signers.required() {
        std::fs::read(signature_path(path)).ok()
    } else {
        None
    };
    let (version, _) = import(store, &text, signature.as_deref(), signers, now)
        .await
        .map_err(at)?;
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
        let mut last = mtimes(&path);
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let now = mtimes(&path);
            if now == last {
                continue;
            }
            let store = policy.store().clone();
            let imported = import_file(
                ActivationLog::Writer(&audit),
                &store,
                policy.signers(),
                &path,
                clock.now(),
            )
            .await;
            match imported {
                Ok(_) => last = now,
                Err(
                    e @ (FileImportError::Load(_)
                    | FileImportError::Activate {
                        source: ActivateError::Invalid(_) | ActivateError::Signature(_),
                        ..
                    }),
                ) => {
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

/// The modification times of the file and of its signature (either
/// changing is a new candidate).
fn mtimes(path: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (mtime(path), mtime(&signature_path(path)))
}
