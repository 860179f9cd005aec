//! Signing execution tokens. Their claims are built in
//! `verifier_lib::decision::claims`; this module signs them with the
//! broker's token key and makes the store's record of them. It knows
//! nothing of requests or state: issuer and key come in as arguments.

use verifier_lib::crypto::HashAlg;
use verifier_lib::token::{self, Claims, SigningKey, TokenError, VerifyingKey};

use crate::store::{StatusSlot, TokenRecord};
use verifier_lib::token::StatusRef;

/// A freshly signed token and what the store records of it.
#[derive(Debug)]
pub struct Minted {
    pub token: Vec<u8>,
    pub record: TokenRecord,
}

/// Parse a workload's `cnf` COSE_Key.
pub fn parse_cnf(bytes: &[u8]) -> Result<VerifyingKey, TokenError> {
    VerifyingKey::from_cose_key_bytes(bytes)
}

/// The `verifier-id` every token carries.
pub fn verifier_id() -> String {
    format!("writ-broker/{}", env!("CARGO_PKG_VERSION"))
}

/// A new random token id.
pub fn new_cti() -> Result<Vec<u8>, TokenError> {
    token::new_cti(&aws_lc_rs::rand::SystemRandom::new())
}

/// Sign `claims` with `key`, in status-list slot `status` (from
/// `Governance::allocate`, set as the token's `status` claim); `policy_id`
/// is recorded with the token.
pub fn sign(
    claims: &Claims,
    key: &SigningKey,
    policy_id: &str,
    status: &(StatusSlot, StatusRef),
) -> Result<Minted, TokenError> {
    let mut claims = claims.clone();
    claims.status = Some(status.1.clone());
    let claims = &claims;
    let bytes = token::mint(claims, key)?;
    Ok(Minted {
        record: TokenRecord {
            cti: claims.cti.clone(),
            host_id: claims.sub.clone(),
            workload: claims.aud.clone(),
            workload_digest: claims.workload_digest.clone().unwrap_or_default(),
            iat: claims.iat,
            exp: claims.exp,
            policy_id: policy_id.to_owned(),
            token_digest: HashAlg::Sha256.digest(&bytes),
            status: Some(status.0),
            audit_index: claims.audit_index,
        },
        token: bytes,
    })
}
