//! The challenge key and the nonce format (see `super::nonce` for issuing
//! and checking challenges). Kept apart from `nonce` so that the broker
//! state can hold the key without importing the code that reads the state.

use aws_lc_rs::hmac;
use verifier_lib::crypto::HashAlg;

use super::DecisionError;
use crate::store::audit::NonceUse;
use crate::store::NonceProblem;

/// Domain separation for the MAC.
const LABEL: &[u8] = b"writ-challenge-v1";
const EXPIRY_LEN: usize = 8;
const RANDOM_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Length of an issued nonce (at most 64, the TPM's qualifying data and the
/// token's `eat_nonce` bound).
pub const NONCE_LEN: usize = EXPIRY_LEN + RANDOM_LEN + TAG_LEN;

/// Random bytes from the system RNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], DecisionError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| DecisionError::Rng)?;
    Ok(out)
}

/// The key challenges are authenticated with.
pub struct ChallengeKey(hmac::Key);

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKey(..)")
    }
}

impl ChallengeKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The MAC input: label, length-prefixed host id, expiry, randomness.
    fn message(host_id: &str, head: &[u8]) -> Vec<u8> {
        let len = u64::try_from(host_id.len()).unwrap_or(u64::MAX);
        [LABEL, &len.to_be_bytes(), host_id.as_bytes(), head].concat()
    }

    /// A nonce for `host_id` valid until `expires_at`.
    pub fn issue(&self, host_id: &str, expires_at: i64) -> Result<Vec<u8>, DecisionError> {
        let mut nonce = Vec::with_capacity(NONCE_LEN);
        nonce.extend_from_slice(&expires_at.to_be_bytes());
        nonce.extend_from_slice(&random_bytes::<RANDOM_LEN>()?);
        let tag = hmac::sign(&self.0, &Self::message(host_id, &nonce));
        nonce.extend_from_slice(tag.as_ref());
        Ok(nonce)
    }

    /// Check that `nonce` was issued to `host_id` and is unexpired at
    /// `now`; the result is what the decision's transaction consumes.
    pub fn verify(&self, nonce: &[u8], host_id: &str, now: i64) -> Result<NonceUse, NonceProblem> {
        if nonce.len() != NONCE_LEN {
            return Err(NonceProblem::Unknown);
        }
        let (head, tag) = nonce.split_at(EXPIRY_LEN + RANDOM_LEN);
        // Constant-time comparison.
        hmac::verify(&self.0, &Self::message(host_id, head), tag)
            .map_err(|_| NonceProblem::Unknown)?;
        let mut expiry = [0u8; EXPIRY_LEN];
        expiry.copy_from_slice(&head[..EXPIRY_LEN]);
        let expires_at = i64::from_be_bytes(expiry);
        if now >= expires_at {
            return Err(NonceProblem::Expired);
        }
        Ok(NonceUse {
            digest: HashAlg::Sha256.digest(nonce),
            expires_at,
            at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding3_challenges_verify_only_for_their_host_until_expiry() {
        let key = ChallengeKey::new(b"k1");
        let nonce = key.issue("h1", 100).unwrap();
        assert_eq!(nonce.len(), NONCE_LEN);
        let used = key.verify(&nonce, "h1", 99).unwrap();
        assert_eq!(used.expires_at, 100);
        assert_eq!(used.digest, HashAlg::Sha256.digest(&nonce));
        assert_eq!(key.verify(&nonce, "h2", 99), Err(NonceProblem::Unknown));
        assert_eq!(key.verify(&nonce, "h1", 100), Err(NonceProblem::Expired));
        let other = ChallengeKey::new(b"k2");
        assert_eq!(other.verify(&nonce, "h1", 99), Err(NonceProblem::Unknown));
        // A forged later expiry breaks the MAC.
        let mut forged = nonce.clone();
        forged[..8].copy_from_slice(&1000i64.to_be_bytes());
        assert_eq!(key.verify(&forged, "h1", 99), Err(NonceProblem::Unknown));
        assert_eq!(
            key.verify(&nonce[1..], "h1", 99),
            Err(NonceProblem::Unknown)
        );
        // Two challenges for the same host and expiry differ.
        assert_ne!(key.issue("h1", 100).unwrap(), nonce);
    }
}
