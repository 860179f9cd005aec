//! The identity of a TPM: derived from its endorsement key itself, not from
//! the bytes a client sent for it.
//!
//! The same TPM can be described by many EK public areas (the RSA exponent
//! written as 0 or as 65537, a modulus with a leading zero, another
//! authPolicy): only the key is bound to the TPM by credential activation.
//! [`EkIdentity`] hashes a canonical encoding of that key, so every
//! encoding of one key is one host, and records the EK certificate the key
//! was presented with, so revocation can name both.

use super::{check_ek_public, EkCertError, EkCertificate};
use crate::crypto::{HashAlg, PublicKey};

/// Domain-separation label of the canonical key encoding (version 1).
pub const EK_KEY_LABEL: &[u8] = b"writ-ek-key/v1";

/// The identity of one TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkIdentity {
    /// SHA-256 of the canonical EK key encoding, lower-case hex.
    pub key_digest: String,
    /// SHA-256 of the EK certificate (DER) the key was presented with,
    /// lower-case hex.
    pub certificate_digest: Option<String>,
}

impl EkIdentity {
    /// The identity of the EK `key` alone (no certificate).
    pub fn of_key(key: &PublicKey) -> EkIdentity {
        EkIdentity {
            key_digest: hex::encode(canonical_key_digest(key)),
            certificate_digest: None,
        }
    }

    /// The identity of an EK presented with its certificate: the
    /// certificate must certify exactly `key`.
    pub fn of_certified_key(
        key: &PublicKey,
        certificate: &EkCertificate,
    ) -> Result<EkIdentity, EkCertError> {
        check_ek_public(certificate, key)?;
        Ok(EkIdentity {
            certificate_digest: Some(hex::encode(HashAlg::Sha256.digest(&certificate.der))),
            ..EkIdentity::of_key(key)
        })
    }

    /// The host id of this TPM: the first 16 bytes of the key digest, hex.
    pub fn host_id(&self) -> String {
        self.key_digest
            .get(..32)
            .unwrap_or(&self.key_digest)
            .to_owned()
    }

    /// The names under which a revocation of this TPM is recorded:
    /// `ek-key:<digest>` and, with a certificate, `ek-cert:<digest>`.
    pub fn revocation_names(&self) -> Vec<String> {
        let mut names = vec![format!("ek-key:{}", self.key_digest)];
        if let Some(c) = &self.certificate_digest {
            names.push(format!("ek-cert:{c}"));
        }
        names
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

fn length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// SHA-256 of `label ‖ kind ‖ fields`: RSA `"rsa" ‖ len ‖ n ‖ len ‖ e`
/// (both without leading zeros, an exponent of 0 read as 65537); ECC
/// `"ecc" ‖ len ‖ curve ‖ len ‖ 04 ‖ x ‖ y` (coordinates at the curve's
/// field size).
fn canonical_key_digest(key: &PublicKey) -> Vec<u8> {
    let mut encoded = Vec::new();
    match key {
        PublicKey::Rsa { n, e } => {
            let e = strip_leading_zeros(e);
            let e: &[u8] = if e.is_empty() { &[0x01, 0x00, 0x01] } else { e };
            length_prefixed(&mut encoded, b"rsa");
            length_prefixed(&mut encoded, strip_leading_zeros(n));
            length_prefixed(&mut encoded, e);
        }
        PublicKey::Ec { curve, point } => {
            length_prefixed(&mut encoded, b"ecc");
            length_prefixed(&mut encoded, format!("{curve:?}").as_bytes());
            length_prefixed(&mut encoded, point);
        }
    }
    HashAlg::Sha256.digest_parts([EK_KEY_LABEL, encoded.as_slice()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::Public;

    /// A `TPMT_PUBLIC` of template L-1 (as in the template tests).
    fn l1(n: &[u8; 256], exponent: u32) -> Public {
        let mut b = Vec::new();
        b.extend_from_slice(&[0x00, 0x01, 0x00, 0x0b, 0x00, 0x03, 0x00, 0xb2, 0x00, 0x20]);
        b.extend_from_slice(&[0x5a; 32]);
        b.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43, 0x00, 0x10, 0x08, 0x00]);
        b.extend_from_slice(&exponent.to_be_bytes());
        b.extend_from_slice(&[0x01, 0x00]);
        b.extend_from_slice(n);
        Public::parse(&b).unwrap()
    }

    #[test]
    fn finding1_exponent_65537_and_0_are_one_identity() {
        let zero = EkIdentity::of_key(&l1(&[0xa5; 256], 0).key);
        let explicit = EkIdentity::of_key(&l1(&[0xa5; 256], 65537).key);
        assert_eq!(zero, explicit);
        assert_eq!(zero.host_id().len(), 32);
        // The same key as an SPKI would carry it (exponent 01 00 01, a
        // leading zero on the modulus).
        let mut n = vec![0];
        n.extend_from_slice(&[0xa5; 256]);
        let spki = PublicKey::Rsa {
            n,
            e: vec![0x01, 0x00, 0x01],
        };
        assert_eq!(EkIdentity::of_key(&spki), zero);
    }

    #[test]
    fn finding1_other_fields_do_not_change_the_identity() {
        let a = l1(&[0xa5; 256], 0);
        let mut b = a.clone();
        b.auth_policy[0] ^= 1;
        b.object_attributes |= 0x40;
        assert_eq!(EkIdentity::of_key(&a.key), EkIdentity::of_key(&b.key));
    }

    #[test]
    fn finding1_different_keys_are_different_identities() {
        let a = EkIdentity::of_key(&l1(&[0xa5; 256], 0).key);
        let mut n = [0xa5; 256];
        n[255] ^= 1;
        let b = EkIdentity::of_key(&l1(&n, 0).key);
        assert_ne!(a.key_digest, b.key_digest);
        assert_ne!(a.host_id(), b.host_id());
        let e3 = EkIdentity::of_key(&l1(&[0xa5; 256], 3).key);
        assert_ne!(a.key_digest, e3.key_digest);
    }

    #[test]
    fn revocation_names_cover_key_and_certificate() {
        let mut id = EkIdentity::of_key(&l1(&[0xa5; 256], 0).key);
        assert_eq!(
            id.revocation_names(),
            vec![format!("ek-key:{}", id.key_digest)]
        );
        id.certificate_digest = Some("ab".repeat(32));
        assert_eq!(id.revocation_names().len(), 2);
        assert_eq!(
            id.revocation_names()[1],
            format!("ek-cert:{}", "ab".repeat(32))
        );
    }
}
