//! Seed protection to the EK (RSA-OAEP or ECDH + KDFe) and the AES-CFB
//! encryption of the credential.

use aws_lc_rs::agreement;
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::rsa::{
    OaepAlgorithm, OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1,
    OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
};

use super::kdf::kdf_e;
use super::CredentialError;
use crate::crypto::{Curve, HashAlg, PublicKey};

/// The OAEP label and KDFe label for credential seeds.
const IDENTITY: &[u8] = b"IDENTITY\0";
/// How many random scalars to try for the ephemeral ECDH key (a scalar out of
/// range has probability < 2^-32 for P-256).
const SCALAR_ATTEMPTS: usize = 8;

/// Create the seed and its protection to `ek`: (seed, TPM2B_ENCRYPTED_SECRET buffer).
pub(super) fn seed_for(
    ek: &PublicKey,
    name_alg: HashAlg,
    rng: &dyn SecureRandom,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    match ek {
        PublicKey::Rsa { n, e } => {
            let mut seed = vec![0u8; name_alg.output_len()];
            rng.fill(&mut seed).map_err(|_| CredentialError::Encrypt {
                step: "random seed",
            })?;
            let secret = rsa_oaep_encrypt(n, e, name_alg, &seed)?;
            Ok((seed, secret))
        }
        PublicKey::Ec { curve, point } => ecdh_seed(*curve, point, name_alg, rng),
    }
}

fn oaep_algorithm(hash: HashAlg) -> &'static OaepAlgorithm {
    match hash {
        HashAlg::Sha1 => &OAEP_SHA1_MGF1SHA1,
        HashAlg::Sha256 => &OAEP_SHA256_MGF1SHA256,
        HashAlg::Sha384 => &OAEP_SHA384_MGF1SHA384,
        HashAlg::Sha512 => &OAEP_SHA512_MGF1SHA512,
    }
}

fn rsa_oaep_encrypt(
    n: &[u8],
    e: &[u8],
    hash: HashAlg,
    seed: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let spki = rsa_spki_der(n, e);
    let key = PublicEncryptingKey::from_der(&spki)
        .ok()
        .and_then(|k| OaepPublicEncryptingKey::new(k).ok())
        .ok_or_else(|| CredentialError::UnsupportedKey {
            key: format!("rsa-{}", n.len() * 8),
        })?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let written = key
        .encrypt(oaep_algorithm(hash), seed, &mut out, Some(IDENTITY))
        .map_err(|_| CredentialError::Encrypt { step: "RSA-OAEP" })?
        .len();
    out.truncate(written);
    Ok(out)
}

fn ecdh_algorithm(curve: Curve) -> &'static agreement::Algorithm {
    match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
        Curve::P521 => &agreement::ECDH_P521,
    }
}

/// Ephemeral ECDH with the EK: seed = KDFe(nameAlg, Z.x, "IDENTITY",
/// ephemeral.x, ek.x, digest bits); the secret is the ephemeral point.
fn ecdh_seed(
    curve: Curve,
    ek_point: &[u8],
    name_alg: HashAlg,
    rng: &dyn SecureRandom,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let field = curve.field_len();
    let unsupported = || CredentialError::UnsupportedKey {
        key: format!("ec-{curve:?} point of {} bytes", ek_point.len()),
    };
    let (ek_x, _) = match ek_point.split_first() {
        Some((0x04, xy)) if xy.len() == 2 * field => xy.split_at(field),
        _ => return Err(unsupported()),
    };
    let alg = ecdh_algorithm(curve);
    let ephemeral = ephemeral_key(alg, field, rng)?;
    let eph_public = ephemeral
        .compute_public_key()
        .map_err(|_| CredentialError::Encrypt {
            step: "ephemeral public key",
        })?;
    let eph_point = eph_public.as_ref();
    let (eph_x, eph_y) = match eph_point.split_first() {
        Some((0x04, xy)) if xy.len() == 2 * field => xy.split_at(field),
        _ => {
            return Err(CredentialError::Encrypt {
                step: "ephemeral public key",
            })
        }
    };
    let peer = agreement::UnparsedPublicKey::new(alg, ek_point);
    let z = agreement::agree(&ephemeral, peer, unsupported(), |z| Ok(z.to_vec()))?;
    let bits = u32::try_from(name_alg.output_len() * 8).unwrap_or(u32::MAX);
    let seed = kdf_e(name_alg, &z, b"IDENTITY", eph_x, ek_x, bits);

    let coord_len = u16::try_from(field).map_err(|_| unsupported())?;
    let mut secret = Vec::with_capacity(4 + 2 * field);
    secret.extend_from_slice(&coord_len.to_be_bytes());
    secret.extend_from_slice(eph_x);
    secret.extend_from_slice(&coord_len.to_be_bytes());
    secret.extend_from_slice(eph_y);
    Ok((seed, secret))
}

/// An ephemeral private key whose scalar comes from `rng`.
fn ephemeral_key(
    alg: &'static agreement::Algorithm,
    field: usize,
    rng: &dyn SecureRandom,
) -> Result<agreement::PrivateKey, CredentialError> {
    for _ in 0..SCALAR_ATTEMPTS {
        let mut scalar = vec![0u8; field];
        rng.fill(&mut scalar)
            .map_err(|_| CredentialError::Encrypt {
                step: "random scalar",
            })?;
        if field == Curve::P521.field_len() {
            // P-521 scalars are 521 bits: keep the top byte's low bit only.
            if let Some(top) = scalar.first_mut() {
                *top &= 0x01;
            }
        }
        if let Ok(key) = agreement::PrivateKey::from_private_key(alg, &scalar) {
            return Ok(key);
        }
    }
    Err(CredentialError::Encrypt {
        step: "ephemeral scalar",
    })
}

/// AES-CFB128 with a zero IV, in place; the key length selects AES-128/192/256.
pub(super) fn aes_cfb_encrypt(key: &[u8], data: &mut [u8]) -> Result<(), CredentialError> {
    let alg = match key.len() {
        16 => &aws_lc_rs::cipher::AES_128,
        24 => &aws_lc_rs::cipher::AES_192,
        32 => &aws_lc_rs::cipher::AES_256,
        _ => return Err(CredentialError::Encrypt { step: "AES key" }),
    };
    let key = UnboundCipherKey::new(alg, key)
        .and_then(EncryptingKey::cfb128)
        .map_err(|_| CredentialError::Encrypt { step: "AES key" })?;
    key.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from([0u8; 16])))
        .map_err(|_| CredentialError::Encrypt { step: "AES-CFB" })?;
    Ok(())
}

/// DER SubjectPublicKeyInfo for an RSA key (rsaEncryption, NULL parameters).
fn rsa_spki_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let rsa_public_key = der_tlv(0x30, &[der_integer(n), der_integer(e)].concat());
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(&rsa_public_key);
    let algorithm = der_tlv(
        0x30,
        &[
            der_tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            der_tlv(0x05, &[]),
        ]
        .concat(),
    );
    der_tlv(0x30, &[algorithm, der_tlv(0x03, &bit_string)].concat())
}

/// A positive DER INTEGER from big-endian magnitude bytes.
fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let trimmed = magnitude.get(first..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der_tlv(0x02, &content)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len.to_be_bytes().last().copied().unwrap_or(0));
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len().to_be_bytes().last().copied().unwrap_or(0));
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}
