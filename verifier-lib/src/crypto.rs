//! The cryptographic primitives every verifier in this crate uses, backed by
//! aws-lc-rs. Nothing here parses evidence: callers pass already-checked
//! key material and signatures.

use aws_lc_rs::{digest, signature};

/// Hash algorithms Writ understands, with their TPM_ALG_ID values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    /// TPM_ALG_ID of this hash.
    pub fn tpm_alg_id(self) -> u16 {
        match self {
            HashAlg::Sha1 => 0x0004,
            HashAlg::Sha256 => 0x000B,
            HashAlg::Sha384 => 0x000C,
            HashAlg::Sha512 => 0x000D,
        }
    }

    /// The hash for a TPM_ALG_ID, if Writ supports it.
    pub fn from_tpm_alg_id(id: u16) -> Option<HashAlg> {
        match id {
            0x0004 => Some(HashAlg::Sha1),
            0x000B => Some(HashAlg::Sha256),
            0x000C => Some(HashAlg::Sha384),
            0x000D => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// Output size in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Lower-case name as used in JSON (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// Parse a lower-case name (`sha1`, `sha256`, `sha384`, `sha512`).
    pub fn from_name(name: &str) -> Option<HashAlg> {
        HashAlg::ALL.into_iter().find(|h| h.name() == name)
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha384 => &digest::SHA384,
            HashAlg::Sha512 => &digest::SHA512,
        }
    }

    /// Hash one buffer.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.algorithm(), data).as_ref().to_vec()
    }

    /// Hash the concatenation of several buffers.
    pub fn digest_parts<'a>(self, parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut ctx = digest::Context::new(self.algorithm());
        for p in parts {
            ctx.update(p);
        }
        ctx.finish().as_ref().to_vec()
    }

    /// PCR extend: H(old ‖ new).
    pub fn extend(self, old: &[u8], new: &[u8]) -> Vec<u8> {
        self.digest_parts([old, new])
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Elliptic curves Writ verifies signatures on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// Size of one coordinate / scalar in bytes.
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// TPM_ECC_CURVE value.
    pub fn tpm_curve_id(self) -> u16 {
        match self {
            Curve::P256 => 0x0003,
            Curve::P384 => 0x0004,
            Curve::P521 => 0x0005,
        }
    }

    pub fn from_tpm_curve_id(id: u16) -> Option<Curve> {
        match id {
            0x0003 => Some(Curve::P256),
            0x0004 => Some(Curve::P384),
            0x0005 => Some(Curve::P521),
            _ => None,
        }
    }
}

/// A public key in a form every verifier here can use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// RSA modulus and exponent, big-endian, no leading zeros required.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed EC point `04 ‖ x ‖ y`.
    Ec { curve: Curve, point: Vec<u8> },
}

impl PublicKey {
    /// Build an EC key from affine coordinates, left-padding each to the field size.
    pub fn ec_from_xy(curve: Curve, x: &[u8], y: &[u8]) -> Option<PublicKey> {
        let n = curve.field_len();
        let x = strip_leading_zeros(x);
        let y = strip_leading_zeros(y);
        if x.len() > n || y.len() > n {
            return None;
        }
        let mut point = Vec::with_capacity(1 + 2 * n);
        point.push(0x04);
        point.extend(std::iter::repeat_n(0u8, n - x.len()));
        point.extend_from_slice(x);
        point.extend(std::iter::repeat_n(0u8, n - y.len()));
        point.extend_from_slice(y);
        Some(PublicKey::Ec { curve, point })
    }

    /// Size of an RSA modulus in bits (0 for EC keys).
    pub fn rsa_bits(&self) -> usize {
        match self {
            PublicKey::Rsa { n, .. } => strip_leading_zeros(n).len() * 8,
            PublicKey::Ec { .. } => 0,
        }
    }
}

/// Signature schemes Writ verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SigScheme {
    /// ECDSA with the signature as fixed-size `r ‖ s`.
    EcdsaFixed(HashAlg),
    /// ECDSA with a DER `Ecdsa-Sig-Value`.
    EcdsaDer(HashAlg),
    RsaPkcs1(HashAlg),
    /// RSASSA-PSS with MGF1 of the same hash and salt length = hash length.
    RsaPss(HashAlg),
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("signature does not verify")]
    Invalid,
    #[error("unsupported combination: {scheme:?} with this key")]
    Unsupported { scheme: SigScheme },
}

/// Verify `sig` over `msg` (the message, not its digest) with `key`.
pub fn verify(
    key: &PublicKey,
    scheme: SigScheme,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    match key {
        PublicKey::Ec { curve, point } => {
            let alg: &'static signature::EcdsaVerificationAlgorithm = match (curve, scheme) {
                (Curve::P256, SigScheme::EcdsaFixed(HashAlg::Sha256)) => {
                    &signature::ECDSA_P256_SHA256_FIXED
                }
                (Curve::P256, SigScheme::EcdsaDer(HashAlg::Sha256)) => {
                    &signature::ECDSA_P256_SHA256_ASN1
                }
                (Curve::P256, SigScheme::EcdsaDer(HashAlg::Sha384)) => {
                    &signature::ECDSA_P256_SHA384_ASN1
                }
                (Curve::P384, SigScheme::EcdsaFixed(HashAlg::Sha384)) => {
                    &signature::ECDSA_P384_SHA384_FIXED
                }
                (Curve::P384, SigScheme::EcdsaDer(HashAlg::Sha384)) => {
                    &signature::ECDSA_P384_SHA384_ASN1
                }
                (Curve::P384, SigScheme::EcdsaDer(HashAlg::Sha256)) => {
                    &signature::ECDSA_P384_SHA256_ASN1
                }
                (Curve::P384, SigScheme::EcdsaDer(HashAlg::Sha512)) => {
                    &signature::ECDSA_P384_SHA512_ASN1
                }
                (Curve::P521, SigScheme::EcdsaFixed(HashAlg::Sha512)) => {
                    &signature::ECDSA_P521_SHA512_FIXED
                }
                (Curve::P521, SigScheme::EcdsaDer(HashAlg::Sha512)) => {
                    &signature::ECDSA_P521_SHA512_ASN1
                }
                _ => return Err(SignatureError::Unsupported { scheme }),
            };
            signature::UnparsedPublicKey::new(alg, point)
                .verify(msg, sig)
                .map_err(|_| SignatureError::Invalid)
        }
        PublicKey::Rsa { n, e } => {
            let alg: &'static signature::RsaParameters = match scheme {
                SigScheme::RsaPkcs1(HashAlg::Sha1) => {
                    &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
                }
                SigScheme::RsaPkcs1(HashAlg::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
                SigScheme::RsaPkcs1(HashAlg::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
                SigScheme::RsaPkcs1(HashAlg::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
                SigScheme::RsaPss(HashAlg::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
                SigScheme::RsaPss(HashAlg::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
                SigScheme::RsaPss(HashAlg::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return Err(SignatureError::Unsupported { scheme }),
            };
            let comps = signature::RsaPublicKeyComponents {
                n: strip_leading_zeros(n),
                e: strip_leading_zeros(e),
            };
            comps
                .verify(alg, msg, sig)
                .map_err(|_| SignatureError::Invalid)
        }
    }
}

/// Verify `sig` over a precomputed `digest` (not the message) with `key`:
/// the form IMA file signatures take (the kernel signs the file digest).
/// The digest length must match the scheme's hash.
pub fn verify_prehashed(
    key: &PublicKey,
    scheme: SigScheme,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    let hash = match scheme {
        SigScheme::EcdsaFixed(h)
        | SigScheme::EcdsaDer(h)
        | SigScheme::RsaPkcs1(h)
        | SigScheme::RsaPss(h) => h,
    };
    let imported = digest::Digest::import_less_safe(digest, hash.algorithm())
        .map_err(|_| SignatureError::Invalid)?;
    let unsupported = SignatureError::Unsupported { scheme };
    match key {
        PublicKey::Ec { curve, point } => {
            let alg: &'static signature::EcdsaVerificationAlgorithm = match (curve, scheme) {
                (Curve::P256, SigScheme::EcdsaDer(HashAlg::Sha256)) => {
                    &signature::ECDSA_P256_SHA256_ASN1
                }
                (Curve::P256, SigScheme::EcdsaDer(HashAlg::Sha384)) => {
                    &signature::ECDSA_P256_SHA384_ASN1
                }
                (Curve::P384, SigScheme::EcdsaDer(HashAlg::Sha256)) => {
                    &signature::ECDSA_P384_SHA256_ASN1
                }
                (Curve::P384, SigScheme::EcdsaDer(HashAlg::Sha384)) => {
                    &signature::ECDSA_P384_SHA384_ASN1
                }
                (Curve::P384, SigScheme::EcdsaDer(HashAlg::Sha512)) => {
                    &signature::ECDSA_P384_SHA512_ASN1
                }
                (Curve::P521, SigScheme::EcdsaDer(HashAlg::Sha512)) => {
                    &signature::ECDSA_P521_SHA512_ASN1
                }
                _ => return Err(unsupported),
            };
            signature::UnparsedPublicKey::new(alg, point)
                .verify_digest(&imported, sig)
                .map_err(|_| SignatureError::Invalid)
        }
        PublicKey::Rsa { n, e } => {
            let alg: &'static signature::RsaParameters = match scheme {
                SigScheme::RsaPkcs1(HashAlg::Sha1) => {
                    &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
                }
                SigScheme::RsaPkcs1(HashAlg::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
                SigScheme::RsaPkcs1(HashAlg::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
                SigScheme::RsaPkcs1(HashAlg::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
                _ => return Err(unsupported),
            };
            let der = rsa_public_key_der(n, e);
            signature::UnparsedPublicKey::new(alg, der)
                .verify_digest(&imported, sig)
                .map_err(|_| SignatureError::Invalid)
        }
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
            let significant = bytes.get(first..).unwrap_or_default();
            out.push(0x80 | significant.len() as u8);
            out.extend_from_slice(significant);
        }
        out.extend_from_slice(content);
        out
    }
    fn integer(magnitude: &[u8]) -> Vec<u8> {
        let m = strip_leading_zeros(magnitude);
        let mut content = Vec::with_capacity(m.len() + 1);
        if m.first().is_none_or(|&b| b & 0x80 != 0) {
            content.push(0);
        }
        content.extend_from_slice(m);
        tlv(0x02, &content)
    }
    tlv(0x30, &[integer(n), integer(e)].concat())
}

/// Constant-time equality for secrets and MACs.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    #[test]
    fn ecdsa_roundtrip_and_tamper() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let sig = kp.sign(&rng, b"hello").unwrap();
        let key = PublicKey::Ec {
            curve: Curve::P256,
            point: kp.public_key().as_ref().to_vec(),
        };
        let scheme = SigScheme::EcdsaFixed(HashAlg::Sha256);
        assert_eq!(verify(&key, scheme, b"hello", sig.as_ref()), Ok(()));
        assert_eq!(
            verify(&key, scheme, b"hellp", sig.as_ref()),
            Err(SignatureError::Invalid)
        );
        assert!(matches!(
            verify(
                &key,
                SigScheme::RsaPss(HashAlg::Sha256),
                b"hello",
                sig.as_ref()
            ),
            Err(SignatureError::Unsupported { .. })
        ));
    }

    #[test]
    fn hash_ids_roundtrip() {
        for h in HashAlg::ALL {
            assert_eq!(HashAlg::from_tpm_alg_id(h.tpm_alg_id()), Some(h));
            assert_eq!(HashAlg::from_name(h.name()), Some(h));
            assert_eq!(h.digest(b"").len(), h.output_len());
        }
    }
}
