//! The token signing key: generated on first start, stored as PKCS#8 PEM
//! with mode 0600 (written atomically with `private-file`), never logged.

use std::path::{Path, PathBuf};

use private_file::PrivateFileError;
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
    #[error("key file: {0}")]
    File(PrivateFileError),
}

impl From<PrivateFileError> for KeyError {
    fn from(e: PrivateFileError) -> Self {
        match e {
            PrivateFileError::Permissions { path, mode } => KeyError::Permissions { path, mode },
            PrivateFileError::Io { path, source } => KeyError::Io { path, source },
            other => KeyError::File(other),
        }
    }
}

/// Load the token key from `dir`, generating it on first start. A temp
/// file left by an interrupted first start is ignored; when another
/// process generated the key concurrently, its key is loaded.
pub fn load_or_generate(dir: &Path) -> Result<SigningKey, KeyError> {
    let path = dir.join(TOKEN_KEY_FILE);
    if let Some(key) = load(&path)? {
        return Ok(key);
    }
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
    match private_file::write_new(&path, pem.as_bytes()) {
        Ok(()) => {
            tracing::info!(kid = %key.kid(), path = %path.display(), "generated token signing key");
            Ok(key)
        }
        Err(PrivateFileError::AlreadyExists { .. }) => {
            load(&path)?.ok_or(KeyError::File(PrivateFileError::NotFound { path }))
        }
        Err(e) => Err(e.into()),
    }
}

/// The key at `path`, or `None` if there is no file.
fn load(path: &Path) -> Result<Option<SigningKey>, KeyError> {
    let bytes = match private_file::read(path) {
        Ok(bytes) => bytes,
        Err(PrivateFileError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let key_error = |source| KeyError::Key {
        path: path.to_owned(),
        source,
    };
    let pem = String::from_utf8(bytes).map_err(|_| key_error(TokenError::PemMalformed))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map(Some)
        .map_err(key_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_temp_file_from_an_interrupted_write_does_not_block_start_up() {
        let t = tempfile::tempdir().unwrap();
        // What the old writer left behind when it crashed before the rename;
        // it used to make every later start fail with "file exists".
        std::fs::write(
            t.path().join(format!(".{TOKEN_KEY_FILE}.tmp")),
            b"half a key",
        )
        .unwrap();
        let key = load_or_generate(t.path()).unwrap();
        let again = load_or_generate(t.path()).unwrap();
        assert_eq!(key.kid(), again.kid());
        let path = t.path().join(TOKEN_KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        load_or_generate(t.path()).unwrap();
        let path = t.path().join(TOKEN_KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        match load_or_generate(t.path()) {
            Err(KeyError::Permissions { path: p, mode }) => assert_eq!((p, mode), (path, 0o640)),
            other => panic!("expected Permissions, got {other:?}"),
        }
    }
}
