//! Challenge nonces: one helper issues them for every evidence kind (TPM
//! quotes, SEV-SNP reports, request-key certification).
//!
//! A challenge is stateless, so issuing one writes nothing: it is
//! `expires_at (8 bytes, big-endian) ‖ random (16) ‖ HMAC-SHA256` under the
//! fleet challenge key (a secret kept in the store, created once and shared
//! by every broker on it) over a label, the host id, the expiry and the
//! random bytes. A decision first checks the MAC, host binding and expiry
//! ([`verify`], a cheap check before any other work), then consumes the
//! nonce inside its own transaction: a `used_nonces` row keyed by the
//! nonce's SHA-256 (see `store::audit::NonceUse`), so a replay is refused
//! atomically with everything else.

pub use super::challenge::{random_bytes, ChallengeKey, NONCE_LEN};
use super::DecisionError;
use crate::state::AppState;
use crate::store::audit::NonceUse;

/// The store's name for the challenge key.
const KEY_NAME: &str = "challenge-hmac-sha256";
/// An issued nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub nonce: Vec<u8>,
    pub expires_at: i64,
}

/// Issue a single-use nonce bound to `host_id`, valid for the configured
/// lifetime. Nothing is written (no row, no audit leaf).
pub async fn issue(st: &AppState, host_id: &str) -> Result<Issued, DecisionError> {
    let key = key(st).await?;
    let expires_at = st.now().saturating_add(st.config.nonces.ttl_secs);
    Ok(Issued {
        nonce: key.issue(host_id, expires_at)?,
        expires_at,
    })
}

/// Authenticate a nonce presented by `host_id` now (before any other work
/// of the decision); `nonce_unknown` / `nonce_expired` otherwise.
pub async fn verify(st: &AppState, nonce: &[u8], host_id: &str) -> Result<NonceUse, DecisionError> {
    let key = key(st).await?;
    key.verify(nonce, host_id, st.now())
        .map_err(DecisionError::Nonce)
}

/// The fleet challenge key, loaded on first use.
async fn key(st: &AppState) -> Result<&ChallengeKey, DecisionError> {
    st.challenge_key.get_or_try_init(|| load_key(st)).await
}

/// Load (creating it once, fleet-wide) the challenge key from the store.
async fn load_key(st: &AppState) -> Result<ChallengeKey, DecisionError> {
    let candidate = random_bytes::<32>()?;
    let secret = st
        .store
        .fleet_secret(KEY_NAME, &candidate, st.now())
        .await?;
    Ok(ChallengeKey::new(&secret))
}
