//! Measured-boot and IMA rules of a host group: the optional
//! `[groups.boot]` and `[groups.ima]` tables of a v0 policy.
//!
//! ```toml
//! [groups.boot]                   # present: the host must send its event log
//! secure_boot = true              # absent: either state is accepted
//! quote_pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15]
//! dbx_required = ["<sha256 hex>"] # EFI_CERT_SHA256 entries dbx must hold
//! [groups.boot.boot_apps]         # EV_EFI_BOOT_SERVICES_APPLICATION digests
//! allowed = ["<hex>"]             # empty or absent: any not forbidden
//! forbidden = ["<hex>"]
//! [groups.boot.kernels]           # same shape; see docs/policy.md for what counts
//! [groups.boot.initrds]
//! [[groups.boot.cmdlines]]        # at least one must match every kernel command line
//! exact = "root=/dev/sda1 ro"     # or: prefix = "root=/dev/sda1 "
//!
//! [groups.ima]                    # present: the host must send its IMA list
//! exclude = ["/tmp/**"]           # globs: `*` (one path segment), `**`, `?`
//! deny = ["sha256:<hex>"]         # never allowed, even if excluded or signed
//! keys = ["-----BEGIN PUBLIC KEY-----..."] # ima-sig signers (PEM or hex DER SPKI)
//! allow_violations = false
//! boot_aggregate = true           # check entry 0 against the event log
//! [groups.ima.allow]
//! "/usr/bin/bash" = ["sha256:<hex>"]
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::PolicyError;
use crate::crypto::{HashAlg, PublicKey, SigScheme};
use crate::tpm::AkPublic;

/// PCRs quoted for the event log when `quote_pcrs` is absent: every PC
/// Client boot PCR except 10 (IMA's, added when `[groups.ima]` is present).
pub const DEFAULT_BOOT_PCRS: [u8; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDigestRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) allowed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) forbidden: Vec<String>,
}

impl RawDigestRule {
    fn is_empty(&self) -> bool {
        self.allowed.is_empty() && self.forbidden.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(super) enum RawCmdline {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBootRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) secure_boot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) quote_pcrs: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) dbx_required: Vec<String>,
    #[serde(default, skip_serializing_if = "RawDigestRule::is_empty")]
    pub(super) boot_apps: RawDigestRule,
    #[serde(default, skip_serializing_if = "RawDigestRule::is_empty")]
    pub(super) kernels: RawDigestRule,
    #[serde(default, skip_serializing_if = "RawDigestRule::is_empty")]
    pub(super) initrds: RawDigestRule,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) cmdlines: Vec<RawCmdline>,
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImaRules {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) keys: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub(super) allow_violations: bool,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub(super) boot_aggregate: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) allow: BTreeMap<String, Vec<String>>,
}

/// Allowed and forbidden digests of one kind of boot component. An empty
/// `allowed` accepts every digest that is not `forbidden`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DigestRule {
    #[serde(serialize_with = "hex_set")]
    pub allowed: BTreeSet<Vec<u8>>,
    #[serde(serialize_with = "hex_set")]
    pub forbidden: BTreeSet<Vec<u8>>,
}

/// How a kernel command line may look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CmdlineRule {
    Exact(String),
    Prefix(String),
}

impl CmdlineRule {
    pub fn matches(&self, cmdline: &str) -> bool {
        match self {
            CmdlineRule::Exact(e) => cmdline == e,
            CmdlineRule::Prefix(p) => cmdline.starts_with(p.as_str()),
        }
    }
}

/// `[groups.boot]`: what the host must have booted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootRules {
    pub secure_boot: Option<bool>,
    /// PCRs the quote must cover so the log can be checked against them.
    pub quote_pcrs: BTreeSet<u8>,
    #[serde(serialize_with = "hex_set")]
    pub dbx_required: BTreeSet<Vec<u8>>,
    pub boot_apps: DigestRule,
    pub kernels: DigestRule,
    pub initrds: DigestRule,
    /// Empty: any command line.
    pub cmdlines: Vec<CmdlineRule>,
}

/// A key `ima-sig` signatures may be made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaKey {
    /// Signature v2 key id: the last 4 bytes of SHA-1 over the
    /// subjectPublicKey bits (what `evmctl` writes).
    #[serde(serialize_with = "hex_bytes")]
    pub key_id: [u8; 4],
    #[serde(skip)]
    pub key: PublicKey,
}

/// `[groups.ima]`: what the host may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaRules {
    /// Path → allowed file digests.
    pub allow: BTreeMap<String, BTreeSet<Vec<u8>>>,
    pub exclude: Vec<String>,
    #[serde(serialize_with = "hex_set")]
    pub deny: BTreeSet<Vec<u8>>,
    pub keys: Vec<ImaKey>,
    pub allow_violations: bool,
    pub boot_aggregate: bool,
}

impl ImaRules {
    /// Whether `path` is excluded from appraisal by a glob.
    pub fn excluded(&self, path: &str) -> bool {
        self.exclude.iter().any(|g| glob_match(g, path))
    }
}

fn hex_set<S: serde::Serializer>(v: &BTreeSet<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(hex::encode))
}

fn hex_bytes<S: serde::Serializer>(v: &[u8; 4], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// Match `path` against a glob: `**` matches anything (including `/`), `*`
/// anything but `/`, `?` one character other than `/`.
pub fn glob_match(glob: &str, path: &str) -> bool {
    fn go(g: &[char], p: &[char]) -> bool {
        match g.split_first() {
            None => p.is_empty(),
            Some(('*', rest)) if rest.first() == Some(&'*') => {
                let rest = rest.get(1..).unwrap_or_default();
                (0..=p.len()).any(|i| go(rest, p.get(i..).unwrap_or_default()))
            }
            Some(('*', rest)) => {
                for i in 0..=p.len() {
                    if go(rest, p.get(i..).unwrap_or_default()) {
                        return true;
                    }
                    if p.get(i) == Some(&'/') {
                        return false;
                    }
                }
                false
            }
            Some(('?', rest)) => match p.split_first() {
                Some((c, prest)) if *c != '/' => go(rest, prest),
                _ => false,
            },
            Some((c, rest)) => match p.split_first() {
                Some((pc, prest)) if pc == c => go(rest, prest),
                _ => false,
            },
        }
    }
    let g: Vec<char> = glob.chars().collect();
    let p: Vec<char> = path.chars().collect();
    go(&g, &p)
}

/// Parse a digest: `alg:hex` (alg one of sha1/sha256/sha384/sha512) or bare
/// hex of one of those lengths.
fn digest(group: &str, field: &str, value: &str) -> Result<Vec<u8>, PolicyError> {
    let bad = || PolicyError::BadDigest {
        group: group.to_owned(),
        field: field.to_owned(),
        value: value.to_owned(),
    };
    let (alg, hexpart) = match value.trim().split_once(':') {
        Some((a, h)) => (Some(HashAlg::from_name(a).ok_or_else(bad)?), h),
        None => (None, value.trim()),
    };
    let bytes = hex::decode(hexpart).map_err(|_| bad())?;
    let ok = match alg {
        Some(a) => bytes.len() == a.output_len(),
        None => HashAlg::ALL.iter().any(|a| a.output_len() == bytes.len()),
    };
    if ok {
        Ok(bytes)
    } else {
        Err(bad())
    }
}

fn digests(group: &str, field: &str, values: &[String]) -> Result<BTreeSet<Vec<u8>>, PolicyError> {
    values.iter().map(|v| digest(group, field, v)).collect()
}

fn digest_rule(group: &str, field: &str, raw: &RawDigestRule) -> Result<DigestRule, PolicyError> {
    Ok(DigestRule {
        allowed: digests(group, &format!("{field}.allowed"), &raw.allowed)?,
        forbidden: digests(group, &format!("{field}.forbidden"), &raw.forbidden)?,
    })
}

pub(super) fn boot_rules(group: &str, raw: &RawBootRules) -> Result<BootRules, PolicyError> {
    let quote_pcrs: BTreeSet<u8> = match &raw.quote_pcrs {
        Some(list) => list.iter().copied().collect(),
        None => DEFAULT_BOOT_PCRS.into_iter().collect(),
    };
    if let Some(&pcr) = quote_pcrs.iter().find(|p| **p > 23) {
        return Err(PolicyError::BadPcrIndex {
            group: group.to_owned(),
            index: pcr.to_string(),
        });
    }
    Ok(BootRules {
        secure_boot: raw.secure_boot,
        quote_pcrs,
        dbx_required: digests(group, "boot.dbx_required", &raw.dbx_required)?,
        boot_apps: digest_rule(group, "boot.boot_apps", &raw.boot_apps)?,
        kernels: digest_rule(group, "boot.kernels", &raw.kernels)?,
        initrds: digest_rule(group, "boot.initrds", &raw.initrds)?,
        cmdlines: raw
            .cmdlines
            .iter()
            .map(|c| match c {
                RawCmdline::Exact(s) => CmdlineRule::Exact(s.clone()),
                RawCmdline::Prefix(s) => CmdlineRule::Prefix(s.clone()),
            })
            .collect(),
    })
}

/// Parse a signing key (PEM `PUBLIC KEY` or hex of a DER SubjectPublicKeyInfo).
fn ima_key(group: &str, text: &str) -> Result<ImaKey, PolicyError> {
    let bad = |reason: String| PolicyError::BadImaKey {
        group: group.to_owned(),
        reason,
    };
    let der = if text.trim_start().starts_with("-----BEGIN") {
        pem::parse(text.trim())
            .map_err(|e| bad(e.to_string()))?
            .contents()
            .to_vec()
    } else {
        hex::decode(text.trim()).map_err(|e| bad(format!("not PEM and not hex: {e}")))?
    };
    let key = match AkPublic::parse_any(&der).map_err(|e| bad(e.to_string()))? {
        AkPublic::Spki(k) => k,
        _ => return Err(bad("not a SubjectPublicKeyInfo".into())),
    };
    use x509_parser::prelude::FromDer;
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).map_err(|e| bad(e.to_string()))?;
    let sha1 = HashAlg::Sha1.digest(&spki.subject_public_key.data);
    let key_id: [u8; 4] = sha1
        .get(16..20)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("key id".into()))?;
    Ok(ImaKey { key_id, key })
}

pub(super) fn ima_rules(group: &str, raw: &RawImaRules) -> Result<ImaRules, PolicyError> {
    let mut allow = BTreeMap::new();
    for (path, values) in &raw.allow {
        allow.insert(
            path.clone(),
            digests(group, &format!("ima.allow.{path}"), values)?,
        );
    }
    Ok(ImaRules {
        allow,
        exclude: raw.exclude.clone(),
        deny: digests(group, "ima.deny", &raw.deny)?,
        keys: raw
            .keys
            .iter()
            .map(|k| ima_key(group, k))
            .collect::<Result<_, _>>()?,
        allow_violations: raw.allow_violations,
        boot_aggregate: raw.boot_aggregate,
    })
}

/// Why an `ima-sig` signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImaSignatureError {
    #[error("signature header malformed: {reason}")]
    Malformed { reason: &'static str },
    #[error("signature format {type_}/{version} is not digsig v2 (03/02)")]
    UnsupportedFormat { type_: u8, version: u8 },
    #[error("signature hash algorithm {id} does not match the file digest {digest_alg}")]
    HashMismatch { id: u8, digest_alg: String },
    #[error("no configured key has key id {key_id}")]
    UnknownKey { key_id: String },
    #[error("signature does not verify with key {key_id}")]
    Invalid { key_id: String },
}

/// Kernel `enum hash_algo` ids used in signature headers.
fn kernel_hash_algo(id: u8) -> Option<HashAlg> {
    match id {
        2 => Some(HashAlg::Sha1),
        4 => Some(HashAlg::Sha256),
        5 => Some(HashAlg::Sha384),
        6 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// Verify an `ima-sig` signature (digital signature format v2:
/// `03 02 hash_algo keyid[4] sig_size[2 BE] sig`) over the file digest with
/// one of `keys` (chosen by key id). RSA: PKCS#1 v1.5; EC: ECDSA (DER).
pub fn verify_ima_signature(
    keys: &[ImaKey],
    file_digest_alg: &str,
    file_digest: &[u8],
    sig: &[u8],
) -> Result<(), ImaSignatureError> {
    let malformed = |reason| ImaSignatureError::Malformed { reason };
    let (header, body) = sig
        .split_at_checked(9)
        .ok_or_else(|| malformed("shorter than the 9-byte header"))?;
    let [type_, version, algo, k0, k1, k2, k3, s0, s1] = header else {
        return Err(malformed("header"));
    };
    if (*type_, *version) != (3, 2) {
        return Err(ImaSignatureError::UnsupportedFormat {
            type_: *type_,
            version: *version,
        });
    }
    let alg = kernel_hash_algo(*algo)
        .filter(|a| a.name() == file_digest_alg && a.output_len() == file_digest.len())
        .ok_or_else(|| ImaSignatureError::HashMismatch {
            id: *algo,
            digest_alg: file_digest_alg.to_owned(),
        })?;
    if usize::from(u16::from_be_bytes([*s0, *s1])) != body.len() {
        return Err(malformed("sig_size differs from the signature length"));
    }
    let key_id = [*k0, *k1, *k2, *k3];
    let key_id_hex = hex::encode(key_id);
    let mut candidates = keys.iter().filter(|k| k.key_id == key_id).peekable();
    if candidates.peek().is_none() {
        return Err(ImaSignatureError::UnknownKey { key_id: key_id_hex });
    }
    for k in candidates {
        let scheme = match &k.key {
            PublicKey::Rsa { .. } => SigScheme::RsaPkcs1(alg),
            PublicKey::Ec { .. } => SigScheme::EcdsaDer(alg),
        };
        if crate::crypto::verify_prehashed(&k.key, scheme, file_digest, body).is_ok() {
            return Ok(());
        }
    }
    Err(ImaSignatureError::Invalid { key_id: key_id_hex })
}

/// Build a v2 signature header (for tests and tooling).
pub fn ima_signature_v2(alg: HashAlg, key_id: [u8; 4], sig: &[u8]) -> Option<Vec<u8>> {
    let id = match alg {
        HashAlg::Sha1 => 2,
        HashAlg::Sha256 => 4,
        HashAlg::Sha384 => 5,
        HashAlg::Sha512 => 6,
    };
    let len = u16::try_from(sig.len()).ok()?;
    let mut out = vec![3, 2, id];
    out.extend_from_slice(&key_id);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sig);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("/tmp/**", "/tmp/a/b"));
        assert!(glob_match("/tmp/*", "/tmp/a"));
        assert!(!glob_match("/tmp/*", "/tmp/a/b"));
        assert!(glob_match("/usr/lib/*.so.?", "/usr/lib/libc.so.6"));
        assert!(!glob_match("/usr/lib/*.so.?", "/usr/lib/libc.so.66"));
        assert!(glob_match("**", "/anything/at/all"));
        assert!(!glob_match("/var/log", "/var/log/x"));
    }

    #[test]
    fn digests_parse_with_and_without_alg() {
        assert_eq!(
            digest("g", "f", &format!("sha256:{}", "ab".repeat(32)))
                .unwrap()
                .len(),
            32
        );
        assert_eq!(digest("g", "f", &"ab".repeat(20)).unwrap().len(), 20);
        assert!(digest("g", "f", &format!("sha1:{}", "ab".repeat(32))).is_err());
        assert!(digest("g", "f", "md5:00").is_err());
        assert!(digest("g", "f", "abcd").is_err());
    }

    #[test]
    fn ima_signatures_ecdsa_and_rsa() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let file = b"#!/bin/sh\necho hi\n";
        let digest = HashAlg::Sha256.digest(file);
        let sig = kp.sign(&rng, file).unwrap();
        let spki = ec_p256_spki(kp.public_key().as_ref());
        let key = ima_key("g", &hex::encode(&spki)).unwrap();
        let header = ima_signature_v2(HashAlg::Sha256, key.key_id, sig.as_ref()).unwrap();
        let keys = vec![key.clone()];
        assert_eq!(
            verify_ima_signature(&keys, "sha256", &digest, &header),
            Ok(())
        );
        let other = HashAlg::Sha256.digest(b"other");
        assert!(matches!(
            verify_ima_signature(&keys, "sha256", &other, &header),
            Err(ImaSignatureError::Invalid { .. })
        ));
        let wrong_id = ima_signature_v2(HashAlg::Sha256, [0; 4], sig.as_ref()).unwrap();
        assert!(matches!(
            verify_ima_signature(&keys, "sha256", &digest, &wrong_id),
            Err(ImaSignatureError::UnknownKey { .. })
        ));
        assert!(matches!(
            verify_ima_signature(&keys, "sha1", &digest, &header),
            Err(ImaSignatureError::HashMismatch { .. })
        ));
        assert!(matches!(
            verify_ima_signature(&keys, "sha256", &digest, &header[..5]),
            Err(ImaSignatureError::Malformed { .. })
        ));
        // PEM form parses to the same key.
        let pem_text = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
        assert_eq!(ima_key("g", &pem_text).unwrap(), key);

        // RSA PKCS#1 v1.5 over the digest.
        use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let mut rsig = vec![0u8; rsa.public_modulus_len()];
        rsa.sign(&RSA_PKCS1_SHA256, &rng, file, &mut rsig).unwrap();
        use aws_lc_rs::encoding::AsDer;
        let rspki = rsa.public_key().as_der().unwrap();
        let rkey = ima_key("g", &hex::encode(rspki.as_ref())).unwrap();
        let rheader = ima_signature_v2(HashAlg::Sha256, rkey.key_id, &rsig).unwrap();
        assert_eq!(
            verify_ima_signature(&[key, rkey], "sha256", &digest, &rheader),
            Ok(())
        );
    }

    /// DER SubjectPublicKeyInfo for a P-256 point.
    pub(crate) fn ec_p256_spki(point: &[u8]) -> Vec<u8> {
        let mut alg = vec![
            0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        ];
        alg.extend_from_slice(&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
        let mut bits = vec![0x03, u8::try_from(point.len() + 1).unwrap(), 0x00];
        bits.extend_from_slice(point);
        let mut out = vec![0x30, u8::try_from(alg.len() + bits.len()).unwrap()];
        out.extend(alg);
        out.extend(bits);
        out
    }
}
