//! The TPM key-derivation functions (TPM 2.0 Part 1, 11.4.10): KDFa
//! (SP 800-108 counter mode with HMAC) and KDFe (SP 800-56A concatenation).

use aws_lc_rs::{digest, hmac};

use crate::crypto::HashAlg;

fn hmac_algorithm(hash: HashAlg) -> hmac::Algorithm {
    match hash {
        HashAlg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => hmac::HMAC_SHA256,
        HashAlg::Sha384 => hmac::HMAC_SHA384,
        HashAlg::Sha512 => hmac::HMAC_SHA512,
    }
}

fn digest_algorithm(hash: HashAlg) -> &'static digest::Algorithm {
    match hash {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => &digest::SHA256,
        HashAlg::Sha384 => &digest::SHA384,
        HashAlg::Sha512 => &digest::SHA512,
    }
}

/// HMAC over the concatenation of `parts`.
pub fn hmac(hash: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac_algorithm(hash), key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

/// The label as the TPM uses it: the string followed by one 0x00 byte
/// (unless it already ends with one).
fn label_with_nul(label: &[u8]) -> Vec<u8> {
    let mut l = label.to_vec();
    if l.last() != Some(&0) {
        l.push(0);
    }
    l
}

/// Number of output bytes for `bits`, rounded up; `bits` is at most 2^16 in
/// every TPM use, so the counters below never overflow.
fn output_len(bits: u32) -> usize {
    usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX)
}

/// KDFa: `HMAC_hash(key, [i]₃₂ ‖ label ‖ 00 ‖ context_u ‖ context_v ‖ [bits]₃₂)`
/// for i = 1, 2, …, truncated to `bits` (a multiple of 8 in every TPM use).
pub fn kdf_a(
    hash: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let want = output_len(bits);
    let label = label_with_nul(label);
    let mut out = Vec::with_capacity(want + hash.output_len());
    let mut counter: u32 = 1;
    while out.len() < want {
        out.extend(hmac(
            hash,
            key,
            &[
                &counter.to_be_bytes(),
                &label,
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        ));
        counter = counter.wrapping_add(1);
    }
    out.truncate(want);
    out
}

/// KDFe: `H([i]₃₂ ‖ z ‖ label ‖ 00 ‖ party_u ‖ party_v)` for i = 1, 2, …,
/// truncated to `bits`.
pub fn kdf_e(
    hash: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let want = output_len(bits);
    let label = label_with_nul(label);
    let mut out = Vec::with_capacity(want + hash.output_len());
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut ctx = digest::Context::new(digest_algorithm(hash));
        for part in [&counter.to_be_bytes()[..], z, &label, party_u, party_v] {
            ctx.update(part);
        }
        out.extend_from_slice(ctx.finish().as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(want);
    out
}
