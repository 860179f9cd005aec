//! Challenge nonces: one helper issues them for every evidence kind (TPM
//! quotes, SEV-SNP reports, request-key certification). A nonce is consumed
//! inside the transaction of the decision that uses it (see
//! `store::audit::NonceUse`), so a replay is refused atomically with
//! everything else.

use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::crypto::HashAlg;

use super::DecisionError;
use crate::state::AppState;
use crate::store::audit::StateChange;

/// Random bytes from the system RNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], DecisionError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| DecisionError::Rng)?;
    Ok(out)
}

/// An issued nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub nonce: Vec<u8>,
    pub expires_at: i64,
}

/// Issue a single-use nonce bound to `host_id`, valid for the configured
/// lifetime. Its `nonce_issued` leaf logs only the nonce's SHA-256.
pub async fn issue(st: &AppState, host_id: &str) -> Result<Issued, DecisionError> {
    let nonce = random_bytes::<32>()?.to_vec();
    let now = st.now();
    let expires_at = now.saturating_add(st.config.nonces.ttl_secs);
    let leaf = Leaf::new(
        now,
        Decision::NonceIssued {
            host: host_id.to_owned(),
            nonce_digest: HashAlg::Sha256.digest(&nonce),
        },
    );
    let change = StateChange::Nonce {
        nonce: nonce.clone(),
        host_id: host_id.to_owned(),
        expires_at,
    };
    st.audit.append(change, vec![leaf]).await?;
    Ok(Issued { nonce, expires_at })
}
