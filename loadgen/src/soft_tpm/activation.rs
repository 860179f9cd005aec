//! The TPM side of credential activation (TPM2_ActivateCredential, TPM 2.0
//! Part 1 §24 and Part 3 §12.5) for an ECC P-256 EK with SHA-256 and
//! AES-128-CFB, in software:
//!
//! ```text
//! Z        = ECDH(EK private, ephemeral point).x
//! seed     = KDFe(SHA-256, Z, "IDENTITY", ephemeral.x, EK.x, 256)
//! hmacKey  = KDFa(SHA-256, seed, "INTEGRITY", ∅, ∅, 256)
//! check      HMAC(hmacKey, encIdentity ‖ akName) = integrityHMAC
//! symKey   = KDFa(SHA-256, seed, "STORAGE", akName, ∅, 128)
//! secret   = AES-128-CFB⁻¹(symKey, IV 0, encIdentity) = u16 len ‖ secret
//! ```
//!
//! Built on RustCrypto's HMAC, SHA-256 and AES-CFB, and on aws-lc's ECDH;
//! the broker's MakeCredential (verifier-lib) uses aws-lc for all of them.

use aws_lc_rs::agreement::{self, UnparsedPublicKey, ECDH_P256};
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::SoftTpmError;

type HmacSha256 = Hmac<Sha256>;

/// Recover the secret of a credential made for `ak_name` on the EK
/// `ek_private` (whose public x coordinate is `ek_x`).
///
/// `id_object` is the TPM2B_ID_OBJECT buffer (`u16 size ‖ integrityHMAC ‖
/// encIdentity`), `encrypted_secret` the TPMS_ECC_POINT of the ephemeral key
/// (`u16 ‖ x ‖ u16 ‖ y`), both without their outer size, as the broker
/// sends them.
pub fn activate_credential(
    ek_private: &agreement::PrivateKey,
    ek_x: &[u8],
    ak_name: &[u8],
    id_object: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, SoftTpmError> {
    let (eph_x, rest) = tpm2b("encrypted_secret.x", encrypted_secret)?;
    let (eph_y, rest) = tpm2b("encrypted_secret.y", rest)?;
    expect_empty("encrypted_secret", rest)?;
    let mut point = Vec::with_capacity(1 + eph_x.len() + eph_y.len());
    point.push(0x04);
    point.extend_from_slice(eph_x);
    point.extend_from_slice(eph_y);
    let z = agreement::agree(
        ek_private,
        UnparsedPublicKey::new(&ECDH_P256, &point),
        SoftTpmError::Activation {
            step: "ECDH with the ephemeral point",
        },
        |z| Ok(z.to_vec()),
    )?;
    let seed = kdf_e(&z, b"IDENTITY", eph_x, ek_x, 256);

    let (integrity, enc_identity) = tpm2b("id_object.integrityHMAC", id_object)?;
    let hmac_key = kdf_a(&seed, b"INTEGRITY", &[], &[], 256);
    let mut mac = HmacSha256::new_from_slice(&hmac_key)
        .map_err(|_| SoftTpmError::Activation { step: "HMAC key" })?;
    mac.update(enc_identity);
    mac.update(ak_name);
    mac.verify_slice(integrity)
        .map_err(|_| SoftTpmError::Activation {
            step: "integrity HMAC (credential not made for this EK and AK)",
        })?;

    let sym_key = kdf_a(&seed, b"STORAGE", ak_name, &[], 128);
    let mut plain = enc_identity.to_vec();
    cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|_| SoftTpmError::Activation { step: "AES key" })?
        .decrypt(&mut plain);
    let (secret, rest) = tpm2b("encIdentity", &plain)?;
    expect_empty("encIdentity", rest)?;
    Ok(secret.to_vec())
}

/// KDFa with HMAC-SHA-256 (Part 1 §11.4.10.2): HMAC(key, i ‖ label ‖ 0 ‖
/// contextU ‖ contextV ‖ bits) for i = 1, 2, …, truncated to `bits`.
fn kdf_a(key: &[u8], label: &[u8], context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let len = usize::try_from(bits / 8).unwrap_or(0);
    let mut out = Vec::with_capacity(len + 32);
    let mut counter: u32 = 1;
    while out.len() < len {
        // An HMAC key of any length is accepted.
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
            break;
        };
        mac.update(&counter.to_be_bytes());
        mac.update(label);
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// KDFe with SHA-256 (Part 1 §11.4.10.3): H(i ‖ Z ‖ label ‖ 0 ‖ partyU ‖
/// partyV) for i = 1, 2, …, truncated to `bits`.
fn kdf_e(z: &[u8], label: &[u8], party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let len = usize::try_from(bits / 8).unwrap_or(0);
    let mut out = Vec::with_capacity(len + 32);
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label);
        h.update([0]);
        h.update(party_u);
        h.update(party_v);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Split a `TPM2B`: its contents and what follows.
fn tpm2b<'a>(field: &'static str, b: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), SoftTpmError> {
    let truncated = || SoftTpmError::Malformed {
        field,
        expected: "a u16 size and that many bytes".into(),
        actual: format!("{} bytes", b.len()),
    };
    let size = b
        .get(..2)
        .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
        .ok_or_else(truncated)?;
    let body = b.get(2..2 + size).ok_or_else(truncated)?;
    Ok((body, &b[2 + size..]))
}

fn expect_empty(field: &'static str, rest: &[u8]) -> Result<(), SoftTpmError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(SoftTpmError::Malformed {
            field,
            expected: "no trailing bytes".into(),
            actual: format!("{} trailing bytes", rest.len()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TPM 2.0 Part 1 KDFa is SP 800-108 counter mode with HMAC; the first
    /// block of a 256-bit output is one HMAC over the fixed input.
    #[test]
    fn kdf_a_first_block_is_one_hmac() {
        let out = kdf_a(b"key", b"STORAGE", b"name", &[], 256);
        let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
        mac.update(&[0, 0, 0, 1]);
        mac.update(b"STORAGE\0name");
        mac.update(&[0, 0, 1, 0]);
        assert_eq!(out, mac.finalize().into_bytes().to_vec());
        assert_eq!(kdf_a(b"key", b"X", &[], &[], 128).len(), 16);
    }

    #[test]
    fn truncated_id_object_is_a_typed_error() {
        let key = agreement::PrivateKey::generate(&ECDH_P256).unwrap();
        let err = activate_credential(&key, &[0; 32], &[0; 34], &[0, 40, 1], &[0, 1, 2, 0]);
        assert!(
            matches!(err, Err(SoftTpmError::Malformed { .. })),
            "{err:?}"
        );
    }
}
