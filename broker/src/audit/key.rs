//! The checkpoint signing key: Ed25519, separate from the token key,
//! generated on first start as PKCS#8 DER (`checkpoint-key.pk8`, mode 0600).
//! Its public verifier key is written next to it (`checkpoint-key.vkey`) on
//! every start, for `writ-broker audit verify --keys-dir`.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use private_file::PrivateFileError;
use verifier_lib::audit::{AuditError, CheckpointSigner, VerifierKey};

/// Private key file inside the keys directory.
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint-key.pk8";
/// Public verifier key file (signed-note vkey text) inside the keys directory.
pub const CHECKPOINT_VKEY_FILE: &str = "checkpoint-key.vkey";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointKeyError {
    #[error("checkpoint key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint key {path} is readable by group or others (mode {mode:o}); expected 0600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("checkpoint key {path}: {source}")]
    Key { path: PathBuf, source: AuditError },
    #[error("checkpoint key: {0}")]
    File(PrivateFileError),
}

impl From<PrivateFileError> for CheckpointKeyError {
    fn from(e: PrivateFileError) -> Self {
        match e {
            PrivateFileError::Permissions { path, mode } => {
                CheckpointKeyError::Permissions { path, mode }
            }
            PrivateFileError::Io { path, source } => CheckpointKeyError::Io { path, source },
            other => CheckpointKeyError::File(other),
        }
    }
}

/// Loads the checkpoint key from `dir` (generating it on first start) and
/// names it `origin`. A temp file left by an interrupted first start is
/// ignored; when another process generated the key concurrently, its key
/// is loaded.
pub fn load_or_generate(dir: &Path, origin: &str) -> Result<CheckpointSigner, CheckpointKeyError> {
    let path = dir.join(CHECKPOINT_KEY_FILE);
    let signer = match load(&path, origin)? {
        Some(signer) => signer,
        None => generate(dir, &path, origin)?,
    };
    let vkey_path = dir.join(CHECKPOINT_VKEY_FILE);
    std::fs::write(&vkey_path, format!("{}\n", signer.vkey())).map_err(|source| {
        CheckpointKeyError::Io {
            path: vkey_path.clone(),
            source,
        }
    })?;
    Ok(signer)
}

fn generate(dir: &Path, path: &Path, origin: &str) -> Result<CheckpointSigner, CheckpointKeyError> {
    std::fs::create_dir_all(dir).map_err(|source| CheckpointKeyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let key_error = |source| CheckpointKeyError::Key {
        path: path.to_owned(),
        source,
    };
    let signer = CheckpointSigner::generate(origin).map_err(key_error)?;
    let der = signer.to_pkcs8().map_err(key_error)?;
    match private_file::write_new(path, &der) {
        Ok(()) => {
            tracing::info!(path = %path.display(), vkey = %signer.vkey(), "generated checkpoint signing key");
            Ok(signer)
        }
        Err(PrivateFileError::AlreadyExists { .. }) => load(path, origin)?.ok_or_else(|| {
            CheckpointKeyError::File(PrivateFileError::NotFound {
                path: path.to_owned(),
            })
        }),
        Err(e) => Err(e.into()),
    }
}

/// The key at `path`, or `None` if there is no file.
fn load(path: &Path, origin: &str) -> Result<Option<CheckpointSigner>, CheckpointKeyError> {
    let der = match private_file::read(path) {
        Ok(der) => der,
        Err(PrivateFileError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    CheckpointSigner::from_pkcs8(origin, &der)
        .map(Some)
        .map_err(|source| CheckpointKeyError::Key {
            path: path.to_owned(),
            source,
        })
}

/// The default log origin: `writ-broker/<hostname>`.
pub fn default_origin() -> String {
    format!("writ-broker/{}", host_name())
}

/// The default broker name (`broker.name`): the host name, or `localhost`.
pub fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && *c != '+')
        .collect();
    if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    }
}

/// The key id of a verifier key: `<key name>+<8 hex key hash>`, the part of
/// the vkey a signed note names (its signature line carries the name and
/// starts with the key hash). `None` if `vkey` does not parse.
pub fn key_id_of_vkey(vkey: &str) -> Option<String> {
    VerifierKey::parse(vkey.trim())
        .ok()
        .map(|vk| format!("{}+{}", vk.name, hex::encode(vk.key_hash)))
}

/// The key ids named by a signed note's signature lines, in order (read
/// without verifying anything: which key to verify the note with).
pub fn key_ids_of_note(note: &str) -> Vec<String> {
    let Some(split) = note.rfind("\n\n") else {
        return Vec::new();
    };
    note.get(split + 2..)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (name, b64) = line.strip_prefix("\u{2014} ")?.split_once(' ')?;
            let blob = B64.decode(b64).ok()?;
            let hash = blob.get(..4)?;
            Some(format!("{name}+{}", hex::encode(hash)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_temp_file_from_an_interrupted_write_does_not_block_start_up() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join(format!(".{CHECKPOINT_KEY_FILE}.tmp")),
            b"half",
        )
        .unwrap();
        let signer = load_or_generate(t.path(), "writ-broker/test").unwrap();
        let again = load_or_generate(t.path(), "writ-broker/test").unwrap();
        assert_eq!(signer.vkey(), again.vkey());
        let vkey = std::fs::read_to_string(t.path().join(CHECKPOINT_VKEY_FILE)).unwrap();
        assert_eq!(vkey, format!("{}\n", signer.vkey()));
    }

    #[test]
    fn a_note_names_the_key_id_of_the_vkey_that_signed_it() {
        let signer = CheckpointSigner::generate("writ-broker/test").unwrap();
        let other = CheckpointSigner::generate("writ-broker/test").unwrap();
        let cp = verifier_lib::audit::Checkpoint::new("writ-broker/test", 3, [7u8; 32]);
        let note = verifier_lib::audit::sign_checkpoint(&signer, &cp).unwrap();
        let id = key_id_of_vkey(&signer.vkey()).unwrap();
        assert_eq!(key_ids_of_note(&note), vec![id.clone()]);
        // Same name, another key: another id (the key hash differs).
        assert_ne!(key_id_of_vkey(&other.vkey()).unwrap(), id);
        assert!(id.starts_with("writ-broker/test+"));
        assert_eq!(id.len(), "writ-broker/test+".len() + 8);
        assert!(key_ids_of_note("no signature").is_empty());
        assert_eq!(key_id_of_vkey("not a vkey"), None);
    }
}
