//! Signed policies: which operator keys a broker trusts, the check of a
//! policy file's detached signature (the COSE_Sign1 of
//! [`crate::token::policy_signature`]), and the rule that a signed policy
//! never rolls back: it carries a `version` and a candidate must be newer
//! than the active one.

use super::{Policy, PolicyError};
use crate::token::policy_signature::verify_policy_signature;
use crate::token::{TokenError, VerifyingKey};

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1,
/// a 66-byte BIT STRING) before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a policy was refused as signed, or as a successor of the active one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicySignatureError {
    /// Signing is required and the policy has no signature.
    #[error(
        "policy {policy_id} is not signed; this broker requires a signature by one of {trusted:?}"
    )]
    Unsigned {
        policy_id: String,
        trusted: Vec<String>,
    },
    /// The signature does not verify (or names an untrusted key).
    #[error("policy signature: {0}")]
    Signature(#[source] TokenError),
    /// The document is not a valid policy.
    #[error("invalid policy: {0}")]
    Invalid(#[source] PolicyError),
    /// A signed policy must carry a `version` (it orders successors).
    #[error("signed policy {policy_id} has no version: add `version = N` (greater than the active one's)")]
    VersionMissing { policy_id: String },
    /// The candidate is not newer than the active policy (a rollback).
    #[error("policy version {actual} is not newer than the active version {active}: a signed policy cannot be rolled back")]
    VersionNotNewer { active: u64, actual: u64 },
    /// A trusted signer key is not an ES256 (P-256) public key.
    #[error("policy signer key: {reason}")]
    SignerKey { reason: String },
}

/// The operator keys whose signatures a broker accepts on policies. Empty:
/// signing is not configured and policies are taken unsigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySigners {
    keys: Vec<VerifyingKey>,
}

impl PolicySigners {
    /// From P-256 public keys, each PEM (`PUBLIC KEY`) or DER
    /// SubjectPublicKeyInfo (what `openssl pkey -pubout` writes).
    pub fn from_spki(keys: &[Vec<u8>]) -> Result<PolicySigners, PolicySignatureError> {
        let mut out = Vec::with_capacity(keys.len());
        for bytes in keys {
            let ders = crate::pem::der_or_blocks(bytes, "PUBLIC KEY").map_err(|e| {
                PolicySignatureError::SignerKey {
                    reason: e.to_string(),
                }
            })?;
            for der in ders {
                let point = der.strip_prefix(&P256_SPKI_PREFIX[..]).ok_or_else(|| {
                    PolicySignatureError::SignerKey {
                        reason: "not a P-256 (ES256) SubjectPublicKeyInfo".into(),
                    }
                })?;
                let key = VerifyingKey::from_sec1(point).map_err(|e| {
                    PolicySignatureError::SignerKey {
                        reason: e.to_string(),
                    }
                })?;
                out.push(key);
            }
        }
        Ok(PolicySigners { keys: out })
    }

    /// Whether signatures are required (at least one key is trusted).
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The trusted keys' ids (RFC 7638 thumbprints).
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// Parse `text` and, when signing is required, check `signature` over
    /// its exact bytes and that it carries a `version`; the returned policy
    /// names its signer ([`Policy::signer`]). Without trusted keys the
    /// signature is not looked at and the policy has no signer.
    pub fn check(
        &self,
        text: &str,
        signature: Option<&[u8]>,
    ) -> Result<Policy, PolicySignatureError> {
        let mut policy = Policy::parse_toml(text).map_err(PolicySignatureError::Invalid)?;
        if !self.required() {
            return Ok(policy);
        }
        let Some(signature) = signature else {
            return Err(PolicySignatureError::Unsigned {
                policy_id: policy.id,
                trusted: self.kids(),
            });
        };
        let kid = verify_policy_signature(text.as_bytes(), signature, &self.keys)
            .map_err(PolicySignatureError::Signature)?;
        if policy.version.is_none() {
            return Err(PolicySignatureError::VersionMissing {
                policy_id: policy.id,
            });
        }
        policy.signer = Some(kid);
        Ok(policy)
    }
}

/// May `candidate` replace `active`? The same document may (nothing
/// changes); otherwise, when both carry a version, the candidate's must be
/// greater. A signed policy always carries one ([`PolicySigners::check`]),
/// so a validly signed older policy is refused.
pub fn check_succession(
    active: Option<&Policy>,
    candidate: &Policy,
) -> Result<(), PolicySignatureError> {
    let Some(active) = active else {
        return Ok(());
    };
    if active.hash == candidate.hash {
        return Ok(());
    }
    match (active.version, candidate.version) {
        (Some(a), Some(c)) if c <= a => Err(PolicySignatureError::VersionNotNewer {
            active: a,
            actual: c,
        }),
        (Some(a), None) if active.signer.is_some() => Err(PolicySignatureError::VersionNotNewer {
            active: a,
            actual: 0,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::policy_signature::sign_policy;
    use crate::token::SigningKey;

    fn spki_pem(key: &SigningKey) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(key.verifying_key().sec1_point());
        ::pem::encode(&::pem::Pem::new("PUBLIC KEY", der)).into_bytes()
    }

    fn doc(version: u64) -> String {
        format!("id = \"signed\"\nversion = {version}\n")
    }

    #[test]
    fn a_trusted_signature_names_its_signer() {
        let operator = SigningKey::generate().unwrap();
        let signers = PolicySigners::from_spki(&[spki_pem(&operator)]).unwrap();
        assert!(signers.required());
        let text = doc(3);
        let sig = sign_policy(text.as_bytes(), &operator).unwrap();
        let p = signers.check(&text, Some(&sig)).unwrap();
        assert_eq!(p.signer.as_deref(), Some(operator.kid().as_str()));
        assert_eq!(p.version, Some(3));
        // Unsigned, altered, or signed by an untrusted key: refused.
        assert!(matches!(
            signers.check(&text, None),
            Err(PolicySignatureError::Unsigned { .. })
        ));
        let altered = text.replace("signed", "signef");
        assert_eq!(
            signers.check(&altered, Some(&sig)),
            Err(PolicySignatureError::Signature(TokenError::BadSignature))
        );
        let stranger = SigningKey::generate().unwrap();
        let sig2 = sign_policy(text.as_bytes(), &stranger).unwrap();
        assert!(matches!(
            signers.check(&text, Some(&sig2)),
            Err(PolicySignatureError::Signature(
                TokenError::UnknownKey { .. }
            ))
        ));
        // A signed document without a version.
        let bare = "id = \"signed\"\n";
        let sig3 = sign_policy(bare.as_bytes(), &operator).unwrap();
        assert!(matches!(
            signers.check(bare, Some(&sig3)),
            Err(PolicySignatureError::VersionMissing { .. })
        ));
        // Without trusted keys nothing is required and no signer is named.
        let open = PolicySigners::default().check(&text, None).unwrap();
        assert_eq!(open.signer, None);
    }

    #[test]
    fn signed_policies_only_move_forward() {
        let operator = SigningKey::generate().unwrap();
        let signers = PolicySigners::from_spki(&[spki_pem(&operator)]).unwrap();
        let signed = |v: u64| {
            let text = doc(v);
            let sig = sign_policy(text.as_bytes(), &operator).unwrap();
            signers.check(&text, Some(&sig)).unwrap()
        };
        let (v2, v3) = (signed(2), signed(3));
        assert_eq!(check_succession(None, &v2), Ok(()));
        assert_eq!(check_succession(Some(&v2), &v3), Ok(()));
        assert_eq!(check_succession(Some(&v3), &v3), Ok(()));
        assert_eq!(
            check_succession(Some(&v3), &v2),
            Err(PolicySignatureError::VersionNotNewer {
                active: 3,
                actual: 2
            })
        );
        let unversioned = Policy::parse_toml("id = \"x\"\n").unwrap();
        assert!(check_succession(Some(&v3), &unversioned).is_err());
        assert_eq!(check_succession(Some(&unversioned), &v2), Ok(()));
    }

    #[test]
    fn signer_keys_must_be_p256_spki() {
        assert!(matches!(
            PolicySigners::from_spki(&[
                b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".to_vec()
            ]),
            Err(PolicySignatureError::SignerKey { .. })
        ));
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&[0x04; 65]);
        assert!(matches!(
            PolicySigners::from_spki(&[der]),
            Err(PolicySignatureError::SignerKey { .. })
        ));
    }
}
