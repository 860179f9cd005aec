//! The last check before `run` execs a workload: fetch the Token Status
//! List the fresh token names (its `status` claim) and make sure the token's
//! entry is VALID. Fails closed: no verifiable list, no exec.

use verifier_lib::status::{self, ListCheck, StatusError, StatusList, VALID};
use verifier_lib::token::{KeySet, StatusRef};

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
    #[error("token {cti} has status {status} in {uri} (version {version})")]
    Revoked {
        cti: String,
        uri: String,
        status: u8,
        version: u64,
    },
}

impl RevocationCheckError {
    /// Stable code for refusal messages.
    pub fn code(&self) -> &'static str {
        match self {
            RevocationCheckError::Unavailable(_) => "status_unavailable",
            RevocationCheckError::Invalid(StatusError::TokenUnlisted) => "token_unlisted",
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

/// The path of a list URI on any broker of the fleet.
fn list_path(uri: &str) -> Result<&str, StatusError> {
    uri.find("/v1/status/lists/")
        .and_then(|i| uri.get(i..))
        .ok_or_else(|| StatusError::UriMismatch {
            expected: "…/v1/status/lists/{epoch}".into(),
            actual: uri.to_owned(),
        })
}

/// Fetch and verify the list the token names, then check its entry.
pub fn ensure_not_revoked(
    broker: &BrokerClient,
    keys: &KeySet,
    token_status: Option<&StatusRef>,
    cti: &[u8],
    now: i64,
) -> Result<StatusList, RevocationCheckError> {
    let r = token_status.ok_or(StatusError::TokenUnlisted)?;
    let bytes = fetch_list(broker, r)?;
    check_listed(&bytes, keys, Some(r), cti, now)
}

/// The signed list `r` names, as the broker serves it now.
pub fn fetch_list(broker: &BrokerClient, r: &StatusRef) -> Result<Vec<u8>, RevocationCheckError> {
    Ok(broker.get_bytes(list_path(&r.uri)?)?)
}

/// Verify the signed list `bytes` (signature by `keys`, the URI the token
/// names, validity at `now`) and that the token's entry in it is VALID.
pub fn check_listed(
    bytes: &[u8],
    keys: &KeySet,
    token_status: Option<&StatusRef>,
    cti: &[u8],
    now: i64,
) -> Result<StatusList, RevocationCheckError> {
    let r = token_status.ok_or(StatusError::TokenUnlisted)?;
    let list = status::verify_at(bytes, keys, &r.uri, ListCheck::at(now, STATUS_LEEWAY_SECS))?;
    let status = list.status_of(Some(r))?;
    if status != VALID {
        return Err(RevocationCheckError::Revoked {
            cti: hex::encode(cti),
            uri: r.uri.clone(),
            status,
            version: list.version,
        });
    }
    Ok(list)
}
