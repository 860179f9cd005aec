//! The token signing key: generated on first start, stored as PKCS#8 PEM
//! with mode 0600, never logged.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use verifier_lib::token::{SigningKey, TokenError};

/// File name of the token key inside the keys directory.
pub const TOKEN_KEY_FILE: &str = "token-key.pem";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is readable by group or others (mode {mode:o}); expected 0600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path}: {source}")]
    Key { path: PathBuf, source: TokenError },
}

/// Load the token key from `dir`, generating it on first start.
pub fn load_or_generate(dir: &Path) -> Result<SigningKey, KeyError> {
    let path = dir.join(TOKEN_KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => {
            let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions { path, mode });
            }
            SigningKey::from_pkcs8_pem(&pem).map_err(|source| KeyError::Key { path, source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let key = SigningKey::generate().map_err(|source| KeyError::Key {
                path: path.clone(),
                source,
            })?;
            let pem = key.to_pkcs8_pem().map_err(|source| KeyError::Key {
                path: path.clone(),
                source,
            })?;
            // Write to a private temp file, then rename: never a partial key file.
            let tmp = dir.join(format!(".{TOKEN_KEY_FILE}.tmp"));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|source| KeyError::Io {
                    path: tmp.clone(),
                    source,
                })?;
            f.write_all(pem.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|source| KeyError::Io {
                    path: tmp.clone(),
                    source,
                })?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            tracing::info!(kid = %key.kid(), path = %path.display(), "generated token signing key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}
