//! The checkpoint signing key: Ed25519, separate from the token key,
//! generated on first start as PKCS#8 DER (`checkpoint-key.pk8`, mode 0600).
//! Its public verifier key is written next to it (`checkpoint-key.vkey`) on
//! every start, for `writ-broker audit verify --keys-dir`.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use verifier_lib::audit::{AuditError, CheckpointSigner};

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
}

/// Loads the checkpoint key from `dir` (generating it on first start) and
/// names it `origin`.
pub fn load_or_generate(dir: &Path, origin: &str) -> Result<CheckpointSigner, CheckpointKeyError> {
    let path = dir.join(CHECKPOINT_KEY_FILE);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointKeyError::Io { path, source }
    };
    let signer = match std::fs::read(&path) {
        Ok(der) => {
            let mode = std::fs::metadata(&path)
                .map_err(io(&path))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(CheckpointKeyError::Permissions { path, mode });
            }
            CheckpointSigner::from_pkcs8(origin, &der).map_err(|source| {
                CheckpointKeyError::Key {
                    path: path.clone(),
                    source,
                }
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let signer =
                CheckpointSigner::generate(origin).map_err(|source| CheckpointKeyError::Key {
                    path: path.clone(),
                    source,
                })?;
            let der = signer
                .to_pkcs8()
                .map_err(|source| CheckpointKeyError::Key {
                    path: path.clone(),
                    source,
                })?;
            // Private temp file, then rename: never a partial key file.
            let tmp = dir.join(format!(".{CHECKPOINT_KEY_FILE}.tmp"));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(&der)
                .and_then(|_| f.sync_all())
                .map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            tracing::info!(path = %path.display(), vkey = %signer.vkey(), "generated checkpoint signing key");
            signer
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let vkey_path = dir.join(CHECKPOINT_VKEY_FILE);
    std::fs::write(&vkey_path, format!("{}\n", signer.vkey())).map_err(io(&vkey_path))?;
    Ok(signer)
}

/// The default log origin: `writ-broker/<hostname>`.
pub fn default_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && *c != '+')
        .collect();
    if host.is_empty() {
        "writ-broker/localhost".to_owned()
    } else {
        format!("writ-broker/{host}")
    }
}
