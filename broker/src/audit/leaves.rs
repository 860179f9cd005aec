//! The leaves of decisions taken outside `verifier_lib::decision` (which
//! builds the appraisal leaves itself): enrollment, revocations, operator
//! actions, minted tokens.

use verifier_lib::audit::{Decision, Leaf};

use crate::config::Operator;
use crate::store::{HostStatus, TokenRecord};

/// `host_state_changed`.
pub fn host_state_changed(
    host: &str,
    from: HostStatus,
    to: HostStatus,
    reason: &str,
    now: i64,
) -> Leaf {
    Leaf::new(
        now,
        Decision::HostStateChanged {
            host: host.to_owned(),
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
            reason: reason.to_owned(),
        },
    )
}

/// `operator_action`: who did what (the decision's own leaf follows).
pub fn operator_action(op: &Operator, what: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::OperatorAction {
            who: op.name.clone(),
            what: what.to_owned(),
        },
    )
}

/// `host_revoked`.
pub fn host_revoked(host: &str, reason: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::HostRevoked {
            host: host.to_owned(),
            reason: reason.to_owned(),
        },
    )
}

/// `token_revoked` (its descendants are revoked with it).
pub fn token_revoked(cti: &[u8], reason: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::TokenRevoked {
            cti: hex::encode(cti),
            reason: reason.to_owned(),
        },
    )
}

/// `workload_revoked`.
pub fn workload_revoked(workload: &str, reason: &str, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::WorkloadRevoked {
            workload: workload.to_owned(),
            reason: reason.to_owned(),
        },
    )
}

/// `token_minted` for a stored token.
pub fn token_minted(t: &TokenRecord, parent_cti: Option<&[u8]>, now: i64) -> Leaf {
    Leaf::new(
        now,
        Decision::TokenMinted {
            cti: hex::encode(&t.cti),
            sub: t.host_id.clone(),
            aud: t.workload.clone(),
            exp: t.exp,
            parent_cti: parent_cti.map(hex::encode),
            token_digest: t.token_digest.clone(),
        },
    )
}

/// `enrollment` (accepted or refused).
pub fn enrollment(
    host: &str,
    accepted: bool,
    ek_cert_digest: Option<Vec<u8>>,
    ak_name: Vec<u8>,
    reason: Option<&str>,
    now: i64,
) -> Leaf {
    Leaf::new(
        now,
        Decision::Enrollment {
            host: host.to_owned(),
            accepted,
            ek_cert_digest,
            ak_name,
            reason: reason.map(str::to_owned),
        },
    )
}

/// Logs a refusal that changes no state. The refusal stands whether or not
/// it could be logged (a failure to log is reported in the broker's logs).
pub async fn log_refusal(log: &super::AuditLog, leaf: Leaf) {
    if let Err(e) = log
        .append(crate::store::audit::StateChange::Nothing, vec![leaf])
        .await
    {
        tracing::error!(error = %e, "could not log a refusal in the audit log");
    }
}
