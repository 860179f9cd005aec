//! TPM2_MakeCredential in software: the verifier side of the
//! ActivateCredential challenge (TPM 2.0 Part 1, 24 "Credential Protection").
//!
//! The verifier encrypts a short secret so that only a TPM holding the
//! private part of `ek_key` *and* a loaded object named `ak_name` can recover
//! it (with TPM2_ActivateCredential):
//!
//! ```text
//! seed      RSA EK: random, RSA-OAEP(nameAlg, label "IDENTITY\0")
//!           ECC EK: KDFe(nameAlg, ECDH(eph, EK).x, "IDENTITY", eph.x, EK.x)
//! symKey  = KDFa(nameAlg, seed, "STORAGE", akName, ∅, symKeyBits)
//! encId   = AES-CFB(symKey, IV 0, u16 len ‖ credential)
//! hmacKey = KDFa(nameAlg, seed, "INTEGRITY", ∅, ∅, digestBits)
//! hmac    = HMAC_nameAlg(hmacKey, encId ‖ akName)
//! idObject = u16 hmac.len ‖ hmac ‖ encId
//! ```

mod kdf;
mod seal;

pub use kdf::{hmac, kdf_a, kdf_e};

use aws_lc_rs::rand::SecureRandom;

use crate::crypto::{HashAlg, PublicKey};

/// Why a credential could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The EK key cannot wrap a seed (unsupported curve, RSA size aws-lc rejects, malformed point).
    #[error("unsupported EK key for MakeCredential: {key}")]
    UnsupportedKey { key: String },
    /// The EK's symmetric key size is not an AES key size.
    #[error("unsupported EK symmetric key size {bits} bits (expected 128, 192 or 256)")]
    UnsupportedSymKeyBits { bits: u16 },
    /// The credential does not fit a TPM2B_DIGEST of the name algorithm.
    #[error("credential is {actual} bytes, at most {max} allowed")]
    CredentialTooLong { max: usize, actual: usize },
    /// An empty credential proves nothing.
    #[error("credential is empty")]
    CredentialEmpty,
    /// The AK name is not `u16 nameAlg ‖ digest` with a known hash.
    #[error("AK name of {len} bytes (alg 0x{alg_id:04x}) is not a digest name")]
    AkName { alg_id: u16, len: usize },
    /// A cryptographic operation failed (`step` names it).
    #[error("encryption failed at {step}")]
    Encrypt { step: &'static str },
}

/// The EK the credential is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialTarget {
    /// The EK public key (as certified, or as `TPM2_ReadPublic` reports it).
    pub ek_key: PublicKey,
    /// The EK's nameAlg (SHA-256 for the standard templates, SHA-384 for the P-384 high-range one).
    pub name_alg: HashAlg,
    /// The EK's symmetric (AES) key size: 128 for the standard RSA-2048 and
    /// ECC P-256 templates, 256 for the high-range P-384 template.
    pub sym_key_bits: u16,
}

/// The two TPM2_ActivateCredential inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCredential {
    /// The TPM2B_ID_OBJECT *buffer* (TPMS_ID_OBJECT), without the outer
    /// TPM2B size: `u16 hmac size ‖ integrityHMAC ‖ encIdentity`. This is what
    /// `tss_esapi::structures::IdObject::try_from(Vec<u8>)` takes.
    pub id_object: Vec<u8>,
    /// The TPM2B_ENCRYPTED_SECRET *buffer*, without the outer TPM2B size:
    /// the RSA-OAEP ciphertext, or for an ECC EK the marshalled
    /// TPMS_ECC_POINT `u16 x size ‖ x ‖ u16 y size ‖ y` of the ephemeral key.
    /// `tss_esapi::structures::EncryptedSecret::try_from(Vec<u8>)` takes it.
    pub encrypted_secret: Vec<u8>,
}

impl MadeCredential {
    /// The TPM2B_ID_OBJECT with its outer u16 size (as in tpm2-tools files).
    pub fn id_object_tpm2b(&self) -> Vec<u8> {
        tpm2b(&self.id_object)
    }

    /// The TPM2B_ENCRYPTED_SECRET with its outer u16 size.
    pub fn encrypted_secret_tpm2b(&self) -> Vec<u8> {
        tpm2b(&self.encrypted_secret)
    }
}

/// Prefix `data` with its u16 big-endian size (callers keep data < 64 KiB).
fn tpm2b(data: &[u8]) -> Vec<u8> {
    let size = u16::try_from(data.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(data.len() + 2);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Make a credential for the object named `ak_name` (a TPM2B_NAME buffer:
/// `u16 nameAlg ‖ digest`) on the TPM holding the EK of `target`.
///
/// `rng` supplies the RSA seed and the ephemeral ECDH scalar. (The OAEP
/// padding randomness comes from aws-lc's own generator.)
pub fn make_credential(
    target: &CredentialTarget,
    ak_name: &[u8],
    credential: &[u8],
    rng: &dyn SecureRandom,
) -> Result<MadeCredential, CredentialError> {
    check_ak_name(ak_name)?;
    let name_alg = target.name_alg;
    let max = name_alg.output_len();
    if credential.is_empty() {
        return Err(CredentialError::CredentialEmpty);
    }
    if credential.len() > max {
        return Err(CredentialError::CredentialTooLong {
            max,
            actual: credential.len(),
        });
    }
    let sym_key_bits = target.sym_key_bits;
    if !matches!(sym_key_bits, 128 | 192 | 256) {
        return Err(CredentialError::UnsupportedSymKeyBits { bits: sym_key_bits });
    }

    let (seed, encrypted_secret) = seal::seed_for(&target.ek_key, name_alg, rng)?;

    let sym_key = kdf_a(
        name_alg,
        &seed,
        b"STORAGE",
        ak_name,
        &[],
        u32::from(sym_key_bits),
    );
    let mut enc_identity = tpm2b(credential);
    seal::aes_cfb_encrypt(&sym_key, &mut enc_identity)?;

    let digest_bits = u32::try_from(max * 8).unwrap_or(u32::MAX);
    let hmac_key = kdf_a(name_alg, &seed, b"INTEGRITY", &[], &[], digest_bits);
    let integrity = hmac(name_alg, &hmac_key, &[&enc_identity, ak_name]);

    let mut id_object = tpm2b(&integrity);
    id_object.extend_from_slice(&enc_identity);
    Ok(MadeCredential {
        id_object,
        encrypted_secret,
    })
}

fn check_ak_name(name: &[u8]) -> Result<(), CredentialError> {
    let alg_id = match name {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    let ok = HashAlg::from_tpm_alg_id(alg_id).is_some_and(|h| name.len() == 2 + h.output_len());
    if ok {
        Ok(())
    } else {
        Err(CredentialError::AkName {
            alg_id,
            len: name.len(),
        })
    }
}
