//! Writ execution tokens.
//!
//! A token is a COSE_Sign1 (RFC 9052, tag 18) signed with ES256 whose payload
//! is a CWT claims set (RFC 8392) carrying an EAT (RFC 9711) / EAR
//! (draft-ietf-rats-ear) attestation result plus Writ-private claims:
//! workload digest, token lineage, audit-log index and scope. The workload's
//! proof-of-possession key rides in the RFC 8747 `cnf` claim.
//!
//! * [`mint`] signs [`Claims`] with the broker's [`SigningKey`]; the payload is
//!   deterministic CBOR, so equal claims give equal payload bytes.
//! * [`TokenVerifier::verify`] checks structure, header, key, signature and
//!   claims against [`Expectations`] at a caller-supplied time.
//! * [`decode_unverified`] only decodes, for display — it is NOT verification.
//!
//! `docs/token-profile.md` specifies every claim and rule.

pub(crate) mod cbor;
mod claims;
pub mod endorsement;
pub(crate) mod envelope;
mod error;
mod hex_serde;
mod keys;
mod mint;
pub mod policy_signature;
mod status_ref;
mod verify;

pub use claims::{
    label, Appraisal, ClaimValue, Claims, EarStatus, Lineage, SubmodClaims, TrustVector, CTI_LEN,
    DIGEST_LEN, MAX_LINEAGE_DEPTH, NONCE_LEN_MAX, NONCE_LEN_MIN, PROFILE, VERIFIER_DEVELOPER,
};
pub use envelope::{COSE_SIGN1_TAG, CWT_TAG};
pub use error::TokenError;
pub use keys::{jwk_thumbprint, KeySet, SigningKey, VerifyingKey};
pub use mint::{mint, new_cti};
pub use status_ref::{StatusRef, STATUS_URI_MAX_LEN};
pub use verify::{
    decode_unverified, Audience, Expectations, TokenVerifier, VerifiedToken, DEFAULT_LEEWAY_SECS,
    DEFAULT_MAX_LIFETIME_SECS,
};
