//! Per-workload proof-of-possession keys: `run` generates a P-256 key for
//! each workload it starts, binds the token to it (`cnf`), and hands the
//! private key to the child as a PKCS#8 PEM file (mode 0600) in a private
//! runtime directory (mode 0700), named in `WRIT_KEY`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use private_file::PrivateFileError;

use verifier_lib::token::{SigningKey, TokenError};

/// Environment variable naming the key file for the workload.
pub const KEY_ENV: &str = "WRIT_KEY";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("no runtime directory: set --runtime-dir or XDG_RUNTIME_DIR")]
    NoRuntimeDir,
    #[error("runtime directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("runtime directory {path} is mode {mode:o} or not ours (uid {owner}); expected 0700 owned by uid {uid}")]
    Insecure {
        path: PathBuf,
        mode: u32,
        owner: u32,
        uid: u32,
    },
    #[error("workload key: {0}")]
    Key(#[from] TokenError),
    #[error("workload key file: {0}")]
    File(#[from] PrivateFileError),
    /// A key file named for this token holds another key.
    #[error("workload key file {path} holds key {actual}, expected {expected}")]
    OtherKey {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// The runtime directory: `explicit`, else `$XDG_RUNTIME_DIR/writ`, else
/// `$TMPDIR/writ-<uid>` (its ownership and mode are checked before use).
pub fn runtime_dir(explicit: Option<&Path>) -> Result<PathBuf, KeyFileError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("writ"));
    }
    let uid = rustix::process::getuid().as_raw();
    let tmp = std::env::temp_dir();
    if tmp.as_os_str().is_empty() {
        return Err(KeyFileError::NoRuntimeDir);
    }
    Ok(tmp.join(format!("writ-{uid}")))
}

/// Create `dir` with mode 0700 if missing; refuse one that is not ours or
/// is accessible to others.
pub fn ensure_private_dir(dir: &Path) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: dir.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    let uid = rustix::process::getuid().as_raw();
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || meta.uid() != uid || mode & 0o077 != 0 {
        return Err(KeyFileError::Insecure {
            path: dir.to_owned(),
            mode,
            owner: meta.uid(),
            uid,
        });
    }
    Ok(())
}

/// Write `key` as PKCS#8 PEM to a new file `name` (mode 0600, atomically,
/// never over an existing file) in `dir`.
pub fn write_key(dir: &Path, name: &str, key: &SigningKey) -> Result<PathBuf, KeyFileError> {
    ensure_private_dir(dir)?;
    let path = dir.join(name);
    let pem = key.to_pkcs8_pem()?;
    private_file::write_new(&path, pem.as_bytes())?;
    Ok(path)
}

/// The key file `name` in `dir` holding `key`: the file already there when
/// it holds this key (every launch of a program shares the daemon's
/// prepared key and token until renewal, and the name carries the token
/// id), else a new one written by [`write_key`]. A file there with another
/// key is refused.
pub fn write_or_reuse_key(
    dir: &Path,
    name: &str,
    key: &SigningKey,
) -> Result<PathBuf, KeyFileError> {
    let path = dir.join(name);
    let found = match read_key(&path) {
        Err(KeyFileError::File(PrivateFileError::NotFound { .. })) => {
            match write_key(dir, name, key) {
                Err(KeyFileError::File(PrivateFileError::AlreadyExists { .. })) => read_key(&path)?,
                other => return other,
            }
        }
        other => other?,
    };
    if found.kid() != key.kid() {
        return Err(KeyFileError::OtherKey {
            path,
            expected: key.kid(),
            actual: found.kid(),
        });
    }
    Ok(path)
}

/// Load a workload key written by [`write_key`] (what a workload does with
/// `WRIT_KEY`); refused when group or others can read it.
pub fn read_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let pem = String::from_utf8(private_file::read(path)?)
        .map_err(|_| KeyFileError::Key(TokenError::PemMalformed))?;
    Ok(SigningKey::from_pkcs8_pem(&pem)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_round_trips_in_a_private_dir_and_wide_dirs_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("writ");
        let key = SigningKey::generate().unwrap();
        let path = write_key(&dir, "k.pem", &key).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(read_key(&path).unwrap().kid(), key.kid());
        // Never overwrite.
        assert!(matches!(
            write_key(&dir, "k.pem", &key),
            Err(KeyFileError::File(PrivateFileError::AlreadyExists { .. }))
        ));
        // A key readable by others is not loaded.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_key(&path),
            Err(KeyFileError::File(PrivateFileError::Permissions {
                mode: 0o644,
                ..
            }))
        ));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            write_key(&dir, "k2.pem", &key),
            Err(KeyFileError::Insecure { .. })
        ));
    }

    #[test]
    fn a_key_file_is_reused_only_for_the_same_key() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("writ");
        let key = SigningKey::generate().unwrap();
        let first = write_or_reuse_key(&dir, "w-01.pem", &key).unwrap();
        let again = write_or_reuse_key(&dir, "w-01.pem", &key).unwrap();
        assert_eq!(first, again);
        assert_eq!(read_key(&again).unwrap().kid(), key.kid());
        let other = SigningKey::generate().unwrap();
        assert!(matches!(
            write_or_reuse_key(&dir, "w-01.pem", &other),
            Err(KeyFileError::OtherKey { .. })
        ));
    }

    #[test]
    fn a_stale_temp_file_from_an_interrupted_write_does_not_block() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("writ");
        ensure_private_dir(&dir).unwrap();
        std::fs::write(dir.join(".k.pem.tmp"), b"half").unwrap();
        std::fs::write(dir.join(".k.pem.1.2.3.tmp"), b"half").unwrap();
        let key = SigningKey::generate().unwrap();
        let path = write_key(&dir, "k.pem", &key).unwrap();
        assert_eq!(read_key(&path).unwrap().kid(), key.kid());
    }
}
