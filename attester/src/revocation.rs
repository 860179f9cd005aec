//! The last check before `run` execs a workload: fetch the broker's signed
//! status list and make sure the fresh token is not revoked. Fails closed:
//! no verifiable list, no exec.

use verifier_lib::status::{self, StatusError, StatusList};
use verifier_lib::token::KeySet;

use crate::client::{BrokerClient, BrokerOutcome, ClientError};

/// Clock skew tolerated on the list's validity, in seconds.
pub const STATUS_LEEWAY_SECS: i64 = 30;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationCheckError {
    #[error("status list unavailable: {0}")]
    Unavailable(#[from] ClientError),
    #[error("status list rejected: {0}")]
    Invalid(#[from] StatusError),
    #[error("token {cti} is revoked (status list version {version})")]
    Revoked { cti: String, version: u64 },
}

impl RevocationCheckError {
    /// Stable code for refusal messages.
    pub fn code(&self) -> &'static str {
        match self {
            RevocationCheckError::Unavailable(_) => "status_unavailable",
            RevocationCheckError::Invalid(_) => "status_invalid",
            RevocationCheckError::Revoked { .. } => "token_revoked",
        }
    }
}

impl BrokerOutcome for RevocationCheckError {
    fn into_broker_failure(self) -> Result<ClientError, Self> {
        match self {
            RevocationCheckError::Unavailable(e) => e
                .into_broker_failure()
                .map_err(RevocationCheckError::Unavailable),
            other => Err(other),
        }
    }
}

/// Fetch and verify the status list, then check `cti`.
pub fn ensure_not_revoked(
    broker: &BrokerClient,
    keys: &KeySet,
    issuer: &str,
    cti: &[u8],
    now: i64,
) -> Result<StatusList, RevocationCheckError> {
    let bytes = broker.get_bytes("/v1/status")?;
    let list = status::verify(&bytes, keys, issuer, now, STATUS_LEEWAY_SECS)?;
    if list.is_revoked(cti) {
        return Err(RevocationCheckError::Revoked {
            cti: hex::encode(cti),
            version: list.version,
        });
    }
    Ok(list)
}
