//! Operator decisions: revoking and reinstating hosts, revoking tokens and
//! workloads. Each is one audited state change with an `operator_action`
//! leaf naming who did it; the store applies it only if it still holds
//! (an unknown host or token, a host that is not revoked, is refused).

use crate::audit::leaves;
use crate::config::Operator;
use crate::state::AppState;
use crate::store::audit::StateChange;
use crate::store::HostStatus;

use super::DecisionError;

/// What a revocation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Tokens newly revoked (descendants included).
    pub tokens: u64,
    /// The status-list version after the change.
    pub status_version: u64,
}

async fn revoked(st: &AppState, tokens: u64) -> Result<Revoked, DecisionError> {
    st.governance.poke();
    st.metrics.tokens_revoked("operator", tokens);
    Ok(Revoked {
        tokens,
        status_version: st.store.status_version().await?,
    })
}

/// Revoke a host: status `revoked`, every token of the host (and their
/// descendants) revoked.
pub async fn revoke_host(
    st: &AppState,
    op: &Operator,
    host_id: &str,
    reason: &str,
) -> Result<Revoked, DecisionError> {
    let now = st.now();
    let change = StateChange::RevokeHost {
        host_id: host_id.to_owned(),
        reason: reason.to_owned(),
        at: now,
    };
    let leaves = vec![
        leaves::operator_action(op, &format!("revoke host {host_id}"), now),
        leaves::host_revoked(host_id, reason, now),
    ];
    let applied = st.audit.apply(change, leaves).await?;
    let r = revoked(st, applied.tokens_revoked).await?;
    tracing::warn!(%host_id, %reason, tokens = r.tokens, "host revoked");
    Ok(r)
}

/// Reinstate a revoked host: `revoked` → `enrolled` (it must attest again).
pub async fn reinstate_host(
    st: &AppState,
    op: &Operator,
    host_id: &str,
) -> Result<(), DecisionError> {
    let now = st.now();
    let change = StateChange::ReinstateHost {
        host_id: host_id.to_owned(),
        at: now,
    };
    let leaves = vec![
        leaves::operator_action(op, &format!("reinstate host {host_id}"), now),
        leaves::host_state_changed(
            host_id,
            HostStatus::Revoked,
            HostStatus::Enrolled,
            "reinstated by operator",
            now,
        ),
    ];
    st.audit.apply(change, leaves).await?;
    tracing::warn!(%host_id, "host reinstated (enrolled; must attest again)");
    Ok(())
}

/// Revoke a token and all its descendants.
pub async fn revoke_token(
    st: &AppState,
    op: &Operator,
    cti: &[u8],
    reason: &str,
) -> Result<Revoked, DecisionError> {
    let now = st.now();
    let change = StateChange::RevokeToken {
        cti: cti.to_vec(),
        reason: reason.to_owned(),
        at: now,
    };
    let leaves = vec![
        leaves::operator_action(op, &format!("revoke token {}", hex::encode(cti)), now),
        leaves::token_revoked(cti, reason, now),
    ];
    let applied = st.audit.apply(change, leaves).await?;
    let r = revoked(st, applied.tokens_revoked).await?;
    tracing::warn!(cti = %hex::encode(cti), %reason, tokens = r.tokens, "token revoked");
    Ok(r)
}

/// Revoke every token of a workload.
pub async fn revoke_workload(
    st: &AppState,
    op: &Operator,
    workload: &str,
    reason: &str,
) -> Result<Revoked, DecisionError> {
    let now = st.now();
    let change = StateChange::RevokeWorkload {
        workload: workload.to_owned(),
        reason: reason.to_owned(),
        at: now,
    };
    let leaves = vec![
        leaves::operator_action(op, &format!("revoke workload {workload}"), now),
        leaves::workload_revoked(workload, reason, now),
    ];
    let applied = st.audit.apply(change, leaves).await?;
    let r = revoked(st, applied.tokens_revoked).await?;
    tracing::warn!(%workload, %reason, tokens = r.tokens, "workload revoked");
    Ok(r)
}
