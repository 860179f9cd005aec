//! C2SP signed notes (Ed25519) and tlog-checkpoint bodies.
//!
//! Note layout: `<text>` + `"\n"` + one or more signature lines
//! `"— <key name> <base64(key hash ‖ signature)>\n"`, where the text is one or
//! more lines each ending in `"\n"`. The key hash is the first four bytes of
//! SHA-256(key name ‖ "\n" ‖ 0x01 ‖ Ed25519 public key), and the signature is
//! Ed25519 over the text. A verifier key is written
//! `<name>+<8 lowercase hex key hash>+<base64(0x01 ‖ public key)>`.

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::tree::Hash;
use super::AuditError;

/// Signature algorithm byte for Ed25519 in signed-note keys.
const ALG_ED25519: u8 = 0x01;
/// Separator between a note's text and its signature lines.
const SIG_PREFIX: &str = "\u{2014} ";
/// Most signature lines a note may carry (as in golang.org/x/mod/sumdb/note).
pub const MAX_NOTE_SIGNATURES: usize = 100;
/// Largest note accepted by [`open_note`].
pub const MAX_NOTE_LEN: usize = 1 << 16;

/// A transparency-log tree head (the body of a C2SP checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Log identity, the first line.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 root hash at `size`.
    #[serde(serialize_with = "hex_hash")]
    pub root: Hash,
    /// Optional extension lines after the root (each non-empty, no newline).
    pub extensions: Vec<String>,
}

fn hex_hash<S: serde::Serializer>(v: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: origin, size, base64 root and extension lines, each
    /// ending in a newline. Fails if a line would be empty or contain a
    /// newline or control character.
    pub fn body(&self) -> Result<String, AuditError> {
        check_text_line(&self.origin, 1, "origin")?;
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for (i, ext) in self.extensions.iter().enumerate() {
            check_text_line(ext, i.saturating_add(4), "extension")?;
            out.push_str(ext);
            out.push('\n');
        }
        Ok(out)
    }

    /// Strictly parses a checkpoint body (the verified text of a note).
    pub fn parse_body(text: &str) -> Result<Checkpoint, AuditError> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(AuditError::CheckpointMalformed {
                line: 0,
                field: "final newline",
            });
        };
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        check_text_line(origin, 1, "origin")?;
        let size_line = lines.next().ok_or(AuditError::CheckpointMalformed {
            line: 2,
            field: "tree size",
        })?;
        let size = parse_decimal(size_line).ok_or(AuditError::CheckpointMalformed {
            line: 2,
            field: "tree size",
        })?;
        let root_line = lines.next().ok_or(AuditError::CheckpointMalformed {
            line: 3,
            field: "root hash",
        })?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AuditError::CheckpointMalformed {
                line: 3,
                field: "root hash",
            })?;
        let mut extensions = Vec::new();
        for (i, ext) in lines.enumerate() {
            check_text_line(ext, i.saturating_add(4), "extension")?;
            extensions.push(ext.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// Decimal without sign, leading zeros (except "0") or whitespace.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn check_text_line(line: &str, n: usize, field: &'static str) -> Result<(), AuditError> {
    if line.is_empty() || line.chars().any(char::is_control) {
        return Err(AuditError::CheckpointMalformed { line: n, field });
    }
    Ok(())
}

/// A key name is non-empty and holds no whitespace, `+` or control character.
fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

fn key_hash(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    let mut out = [0u8; 4];
    out.copy_from_slice(d.get(..4).unwrap_or(&[0; 4]));
    out
}

/// A parsed signed-note verifier key (Ed25519 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name.
    pub name: String,
    /// Four-byte key hash.
    pub key_hash: [u8; 4],
    /// Ed25519 public key.
    pub public_key: [u8; 32],
}

impl VerifierKey {
    /// Builds the key for `name` and an Ed25519 public key.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<VerifierKey, AuditError> {
        if !valid_key_name(name) {
            return Err(AuditError::VerifierKeyMalformed { field: "name" });
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_hash: key_hash(name, &public_key),
            public_key,
        })
    }

    /// Parses `<name>+<hex key hash>+<base64(0x01 ‖ key)>`, checking the key
    /// hash against the name and key.
    pub fn parse(vkey: &str) -> Result<VerifierKey, AuditError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuditError::VerifierKeyMalformed { field: "layout" });
        };
        if !valid_key_name(name) {
            return Err(AuditError::VerifierKeyMalformed { field: "name" });
        }
        if hash_hex.len() != 8
            || !hash_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(AuditError::VerifierKeyMalformed { field: "key hash" });
        }
        let mut claimed = [0u8; 4];
        hex::decode_to_slice(hash_hex, &mut claimed)
            .map_err(|_| AuditError::VerifierKeyMalformed { field: "key hash" })?;
        let raw = B64
            .decode(key_b64)
            .map_err(|_| AuditError::VerifierKeyMalformed { field: "key" })?;
        let (alg, key) = raw
            .split_first()
            .ok_or(AuditError::VerifierKeyMalformed { field: "key" })?;
        if *alg != ALG_ED25519 {
            return Err(AuditError::VerifierKeyAlgorithm { alg: *alg });
        }
        let public_key: [u8; 32] =
            key.try_into()
                .map_err(|_| AuditError::VerifierKeyMalformed {
                    field: "key length",
                })?;
        let vk = VerifierKey::new(name, public_key)?;
        if vk.key_hash != claimed {
            return Err(AuditError::VerifierKeyHashMismatch {
                expected: hex::encode(vk.key_hash),
                actual: hash_hex.to_owned(),
            });
        }
        Ok(vk)
    }

    /// The vkey text `<name>+<hex key hash>+<base64(0x01 ‖ key)>`.
    pub fn to_text(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(&self.public_key);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_hash),
            B64.encode(raw)
        )
    }
}

/// The log's Ed25519 checkpoint signing key with its key name.
pub struct CheckpointSigner {
    name: String,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A fresh random key named `name` (the key name usually equals the
    /// log origin).
    pub fn generate(name: &str) -> Result<CheckpointSigner, AuditError> {
        let key = Ed25519KeyPair::generate().map_err(|_| AuditError::SigningKey)?;
        CheckpointSigner::with_key(name, key)
    }

    /// Loads a PKCS#8 (v1 or v2) Ed25519 private key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<CheckpointSigner, AuditError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| AuditError::SigningKey)?;
        CheckpointSigner::with_key(name, key)
    }

    /// Builds a signer from a raw 32-byte Ed25519 seed (as in a signed-note
    /// `PRIVATE+KEY+…` string).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<CheckpointSigner, AuditError> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| AuditError::SigningKey)?;
        CheckpointSigner::with_key(name, key)
    }

    fn with_key(name: &str, key: Ed25519KeyPair) -> Result<CheckpointSigner, AuditError> {
        if !valid_key_name(name) {
            return Err(AuditError::VerifierKeyMalformed { field: "name" });
        }
        Ok(CheckpointSigner {
            name: name.to_owned(),
            key,
        })
    }

    /// The private key as PKCS#8 v2 DER (store it encrypted).
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, AuditError> {
        self.key
            .to_pkcs8()
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| AuditError::SigningKey)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key.
    pub fn verifier_key(&self) -> VerifierKey {
        let mut pk = [0u8; 32];
        let bytes = self.key.public_key().as_ref();
        if bytes.len() == 32 {
            pk.copy_from_slice(bytes);
        }
        VerifierKey {
            name: self.name.clone(),
            key_hash: key_hash(&self.name, &pk),
            public_key: pk,
        }
    }

    /// The verifier key text `<name>+<hex key hash>+<base64(0x01 ‖ key)>`.
    pub fn vkey(&self) -> String {
        self.verifier_key().to_text()
    }

    /// Signs a note text (lines ending in newline) and returns the note.
    pub fn sign_note(&self, text: &str) -> Result<String, AuditError> {
        check_note_text(text)?;
        let vk = self.verifier_key();
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&vk.key_hash);
        blob.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// Signs `checkpoint` and returns the signed note.
pub fn sign_checkpoint(
    signer: &CheckpointSigner,
    checkpoint: &Checkpoint,
) -> Result<String, AuditError> {
    signer.sign_note(&checkpoint.body()?)
}

/// Note text: non-empty, ends in a newline, no blank line, no control
/// characters other than newline.
fn check_note_text(text: &str) -> Result<(), AuditError> {
    let Some(body) = text.strip_suffix('\n') else {
        return Err(AuditError::NoteMalformed {
            field: "text final newline",
        });
    };
    if body.split('\n').any(|l| l.is_empty()) {
        return Err(AuditError::NoteMalformed {
            field: "text blank line",
        });
    }
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err(AuditError::NoteMalformed {
            field: "text control character",
        });
    }
    Ok(())
}

/// Verifies a signed note against one verifier key and returns its text.
///
/// Signature lines by other keys (name or key hash differing) are ignored;
/// a line by this key whose signature does not verify rejects the note, as
/// does a note with no line by this key.
pub fn open_note(note: &str, verifier_vkey: &str) -> Result<String, AuditError> {
    let vk = VerifierKey::parse(verifier_vkey)?;
    open_note_with(note, &vk)
}

/// [`open_note`] with an already parsed key.
pub fn open_note_with(note: &str, vk: &VerifierKey) -> Result<String, AuditError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(AuditError::NoteMalformed { field: "length" });
    }
    let split = note.rfind("\n\n").ok_or(AuditError::NoteMalformed {
        field: "signature separator",
    })?;
    let text = note.get(..=split).ok_or(AuditError::NoteMalformed {
        field: "signature separator",
    })?;
    let sigs = note.get(split + 2..).ok_or(AuditError::NoteMalformed {
        field: "signature separator",
    })?;
    check_note_text(text)?;
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(AuditError::NoteMalformed {
            field: "signature final newline",
        });
    };
    let public = UnparsedPublicKey::new(&signature::ED25519, vk.public_key);
    let mut count = 0usize;
    let mut verified = false;
    for line in sigs.split('\n') {
        count += 1;
        if count > MAX_NOTE_SIGNATURES {
            return Err(AuditError::NoteMalformed {
                field: "signature count",
            });
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(AuditError::NoteMalformed {
                field: "signature line prefix",
            })?;
        let (name, b64) = rest.split_once(' ').ok_or(AuditError::NoteMalformed {
            field: "signature line",
        })?;
        if !valid_key_name(name) {
            return Err(AuditError::NoteMalformed {
                field: "signature key name",
            });
        }
        let blob = B64.decode(b64).map_err(|_| AuditError::NoteMalformed {
            field: "signature base64",
        })?;
        let (hash, sig) = blob.split_at_checked(4).ok_or(AuditError::NoteMalformed {
            field: "signature length",
        })?;
        if sig.is_empty() {
            return Err(AuditError::NoteMalformed {
                field: "signature length",
            });
        }
        if name != vk.name || hash != vk.key_hash {
            continue;
        }
        if public.verify(text.as_bytes(), sig).is_err() {
            return Err(AuditError::NoteSignatureInvalid {
                key: format!("{}+{}", vk.name, hex::encode(vk.key_hash)),
            });
        }
        verified = true;
    }
    if !verified {
        return Err(AuditError::NoteNotSignedByKey {
            key: format!("{}+{}", vk.name, hex::encode(vk.key_hash)),
        });
    }
    Ok(text.to_owned())
}

/// Verifies a signed checkpoint note against `verifier_vkey` and parses its
/// body strictly.
pub fn open_checkpoint(note: &str, verifier_vkey: &str) -> Result<Checkpoint, AuditError> {
    Checkpoint::parse_body(&open_note(note, verifier_vkey)?)
}

/// [`open_checkpoint`] with an already parsed key.
pub fn open_checkpoint_with(note: &str, vk: &VerifierKey) -> Result<Checkpoint, AuditError> {
    Checkpoint::parse_body(&open_note_with(note, vk)?)
}
