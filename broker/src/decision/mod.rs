//! Applying decisions. Every request that changes state takes one pass:
//!
//! 1. **read** the prior state once (the host, its clock baseline, its IMA
//!    cursor, the parent token…) — a cheap refusal needs no write;
//! 2. **decide** once, purely, in `verifier_lib::decision`;
//! 3. **apply** the decision as one [`StateChange`] in one transaction of the
//!    audit writer, with its audit leaves. The transaction re-checks the
//!    preconditions the decision was taken on (nonce unused, host status and
//!    clock baseline unchanged, parent token live, host still fresh) and
//!    applies nothing when they no longer hold.
//!
//! When another request of the same host committed in between (a normal
//! event under load: re-attestations and token requests race), the pass is
//! retried from the read, at most [`MAX_ATTEMPTS`] times, then refused with
//! [`DecisionError::Conflict`].
//!
//! This layer knows nothing of HTTP: it returns [`DecisionError`], which only
//! the API layer maps to responses.

pub mod appraisal;
pub mod challenge;
pub mod derive;
pub mod nonce;
pub mod operator;
pub mod request_key;
pub mod shadow;
pub mod stale;

use verifier_lib::api::AppraisalResponse;
use verifier_lib::decision::Denial;
use verifier_lib::token::TokenError;

use crate::audit::AppendError;
use crate::store::audit::{ChangeRefused, EntryError};
use crate::store::{NonceProblem, StoreError};

/// Read → decide → apply passes per request before [`DecisionError::Conflict`].
pub const MAX_ATTEMPTS: u32 = 4;

/// Why a request was refused or could not be decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    #[error("no enrolled host {host}")]
    UnknownHost { host: String },
    /// The decision denied the request; `appraisal` is what the client is
    /// told of the appraisal it rests on (when there was one).
    #[error("{denial}")]
    Denied {
        denial: Denial,
        appraisal: Option<Box<AppraisalResponse>>,
    },
    #[error("nonce: {0:?}")]
    Nonce(NonceProblem),
    /// The state change no longer applies and retrying cannot help.
    #[error("state change refused: {0}")]
    Refused(ChangeRefused),
    #[error("the host's state changed {attempts} times while the request was decided; try again")]
    Conflict { attempts: u32 },
    /// The evidence or request could not be checked (e.g. a key the broker
    /// stored no longer parses).
    #[error("{what}: {reason}")]
    Internal { what: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(AppendError),
    #[error("token mint: {0}")]
    Mint(#[from] TokenError),
    #[error("the system RNG failed")]
    Rng,
    #[error("this broker does not appraise SEV-SNP evidence")]
    SnpUnavailable,
    /// The policy gives the host's group no SEV-SNP rules.
    #[error("{reason}")]
    SnpNotAllowed { reason: String },
    /// KDS fetches are at their bound (`[snp]` KDS limits); nothing was
    /// decided.
    #[error("{reason}")]
    KdsBusy { reason: String },
}

impl From<AppendError> for DecisionError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Entry(EntryError::Refused(ChangeRefused::Nonce(p))) => {
                DecisionError::Nonce(p)
            }
            AppendError::Entry(EntryError::Refused(r)) => DecisionError::Refused(r),
            AppendError::Entry(EntryError::Mint(e)) => DecisionError::Mint(e),
            other => DecisionError::Audit(other),
        }
    }
}

impl DecisionError {
    /// The pass should be retried from the read.
    fn is_conflict(&self) -> bool {
        matches!(self, DecisionError::Refused(ChangeRefused::Conflict))
    }
}

/// Runs `pass` (read → decide → apply) until it does not end in a
/// precondition conflict, at most [`MAX_ATTEMPTS`] times.
pub(crate) async fn with_retry<T, F, Fut>(mut pass: F) -> Result<T, DecisionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DecisionError>>,
{
    for attempt in 1..=MAX_ATTEMPTS {
        match pass().await {
            Err(e) if e.is_conflict() => {
                tracing::debug!(attempt, "decision preconditions changed; deciding again");
            }
            other => return other,
        }
    }
    Err(DecisionError::Conflict {
        attempts: MAX_ATTEMPTS,
    })
}
