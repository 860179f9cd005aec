//! `[operators]`: who may use the operator endpoints. Operator endpoints
//! (host list and history, revoke/reinstate, token and workload revocation,
//! policy drafting) require `Authorization: Bearer <token>` where
//! SHA-256(token) is configured here; the operator's name is then recorded in
//! the audit log with what they did. With no operator configured these
//! endpoints refuse every request (fail closed) unless
//! `operators.dangerous_unauthenticated` is set, which `writ-broker serve`
//! refuses.

use serde::{Deserialize, Serialize};
use verifier_lib::crypto::{self, HashAlg};

use super::ConfigError;

/// `[operators]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorsConfig {
    /// Operators and the SHA-256 of their bearer tokens
    /// (`writ-broker operator-token --name NAME` makes one).
    pub tokens: Vec<OperatorToken>,
    /// Serve operator endpoints to anyone (tests only; refused by `serve`).
    pub dangerous_unauthenticated: bool,
}

/// One operator's credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OperatorToken {
    pub name: String,
    /// SHA-256 of the bearer token, 64 hex digits.
    pub sha256: String,
}

/// The authenticated operator of a request (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
}

/// Name recorded for requests served under `dangerous_unauthenticated`.
pub const UNAUTHENTICATED: &str = "unauthenticated";

impl OperatorsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            field: "operators.tokens",
            reason,
        };
        let mut names = std::collections::BTreeSet::new();
        for t in &self.tokens {
            if t.name.is_empty() || t.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(format!(
                    "operator name {:?}: non-empty, no whitespace",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("duplicate operator {}", t.name)));
            }
            if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
                return Err(invalid(format!(
                    "operator {}: sha256 must be 64 hex digits",
                    t.name
                )));
            }
        }
        Ok(())
    }

    /// The operator whose token `presented` is, if any (constant-time
    /// comparison against every configured digest).
    pub fn authenticate(&self, presented: &str) -> Option<Operator> {
        let digest = HashAlg::Sha256.digest(presented.as_bytes());
        let mut found = None;
        for t in &self.tokens {
            let expected = hex::decode(&t.sha256).unwrap_or_default();
            if crypto::ct_eq(&digest, &expected) && found.is_none() {
                found = Some(Operator {
                    name: t.name.clone(),
                });
            }
        }
        found
    }
}
