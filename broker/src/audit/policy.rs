//! Policy activation is a logged decision: the policy in force at start-up,
//! and every policy a reload activates, get a `policy_activated` leaf. On
//! reload the leaf is committed BEFORE the new policy becomes active; if it
//! cannot be logged the previous policy stays active.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::policy::Policy;

use super::{AppendError, AuditLog};
use crate::clock::Clock;
use crate::policy_source::PolicyHandle;
use crate::store::audit::StateChange;

/// The `policy_activated` decision for `policy`.
pub fn activated(policy: &Policy) -> Decision {
    Decision::PolicyActivated {
        policy_id: policy.id.clone(),
        policy_hash: policy.hash.clone(),
    }
}

/// Logs the policy active at start-up.
pub async fn log_active(
    audit: &AuditLog,
    policy: &PolicyHandle,
    clock: &dyn Clock,
) -> Result<u64, AppendError> {
    let p = policy.current();
    audit
        .append(
            StateChange::Nothing,
            vec![Leaf::new(clock.now(), activated(&p))],
        )
        .await
}

/// Polls the policy file every `interval`; a changed, valid policy is logged
/// and then activated.
pub fn spawn_watcher(
    audit: AuditLog,
    policy: PolicyHandle,
    clock: Arc<dyn Clock>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = mtime(&policy);
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let now = mtime(&policy);
            if now == last {
                continue;
            }
            match reload(&audit, &policy, clock.as_ref()).await {
                Ok(_) => last = now,
                Err(e @ ReloadError::Load(_)) => {
                    // Retried when the file changes again.
                    tracing::error!(error = %e, "policy reload refused; previous policy stays active");
                    last = now;
                }
                Err(e) => {
                    // Not logged, so not activated; retried on the next tick.
                    tracing::error!(error = %e, "policy reload refused; previous policy stays active");
                }
            }
        }
    })
}

/// Why a reload did not activate a policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error(transparent)]
    Load(#[from] crate::policy_source::PolicyLoadError),
    #[error("logging the activation: {0}")]
    Audit(#[from] AppendError),
}

/// Re-reads the policy file; logs and activates it if it changed. Returns
/// the leaf index of the activation.
pub async fn reload(
    audit: &AuditLog,
    policy: &PolicyHandle,
    clock: &dyn Clock,
) -> Result<Option<u64>, ReloadError> {
    let Some(p) = policy.candidate()? else {
        return Ok(None);
    };
    let index = audit
        .append(
            StateChange::Nothing,
            vec![Leaf::new(clock.now(), activated(&p))],
        )
        .await?;
    policy.activate(Arc::new(p));
    Ok(Some(index))
}

fn mtime(policy: &PolicyHandle) -> Option<SystemTime> {
    std::fs::metadata(policy.path())
        .and_then(|m| m.modified())
        .ok()
}
