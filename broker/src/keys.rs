//! The token signing key: generated on first start, stored as PKCS#8 PEM
//! with mode 0600 (written atomically with `private-file`), never logged.
//!
//! Rotation ([`rotate`]): a new key with a new `kid` becomes the signing key;
//! the old one's *public* key is kept next to it (a one-key COSE_KeySet,
//! with the time of the rotation) and stays in the published key set for
//! `keys.overlap_secs`, so tokens it signed keep verifying. It is retired
//! (its files removed) by the first start after that window, or at once by
//! [`retire`]. The old private key is not kept.

use std::path::{Path, PathBuf};

use private_file::PrivateFileError;
use verifier_lib::token::{endorsement, KeySet, SigningKey, TokenError, VerifyingKey};

/// File name of the token key inside the keys directory.
pub const TOKEN_KEY_FILE: &str = "token-key.pem";

/// The previous token key's public key (COSE_KeySet with one key).
pub const PREVIOUS_TOKEN_KEY_FILE: &str = "token-key.previous.cose";

/// When the previous key stopped signing (decimal Unix seconds).
pub const PREVIOUS_ROTATED_AT_FILE: &str = "token-key.previous.rotated-at";

/// Every rotation's endorsement (the old key signing the new one), newest
/// last, as `/v1/keys/endorsements` serves it: attesters that pinned an
/// older key follow this chain to the current one.
pub const ENDORSEMENTS_FILE: &str = "token-key.endorsements.cbor";

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
    /// `keys rotate` needs a current key to rotate away from.
    #[error("no token key at {path} to rotate (start the broker once first)")]
    NoCurrentKey { path: PathBuf },
    /// The file naming when the previous key was rotated out is unreadable.
    #[error("{path}: expected decimal Unix seconds")]
    RotatedAtMalformed { path: PathBuf },
    /// A previous key is still published; rotating again would unpublish
    /// it while tokens it signed may still be valid.
    #[error("previous token key {kid} is published until {retire_at}; retire it first (`writ-broker keys retire`)")]
    OverlapNotOver { kid: String, retire_at: i64 },
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

/// The token keys the broker starts with: the signing key and, during its
/// overlap window, the previous key.
#[derive(Debug)]
pub struct TokenKeys {
    pub current: SigningKey,
    pub previous: Option<PreviousKey>,
    /// The rotation endorsements, encoded for `/v1/keys/endorsements`.
    pub endorsements: Vec<u8>,
}

/// A rotated-out token key, still published until `retire_at`.
#[derive(Debug, Clone)]
pub struct PreviousKey {
    pub key: VerifyingKey,
    /// When it stopped signing.
    pub rotated_at: i64,
    /// When it leaves the published key set (`rotated_at + keys.overlap_secs`).
    pub retire_at: i64,
}

/// What [`rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub old_kid: String,
    pub new_kid: String,
    /// The old key leaves the published key set at this time.
    pub retire_at: i64,
}

/// Load the token keys from `dir` at `now`: the current key (generated on
/// first start) and the previous one if its overlap (`overlap_secs` after
/// the rotation) has not ended. A previous key past its overlap is retired
/// here (its files removed).
pub fn load_token_keys(dir: &Path, overlap_secs: i64, now: i64) -> Result<TokenKeys, KeyError> {
    let current = load_or_generate(dir)?;
    let previous = match load_previous(dir, overlap_secs)? {
        Some(p) if now >= p.retire_at => {
            retire(dir)?;
            tracing::info!(kid = %p.key.kid, rotated_at = p.rotated_at, "retired the previous token key: its overlap ended");
            None
        }
        other => other,
    };
    if let Some(p) = &previous {
        tracing::info!(kid = %p.key.kid, retire_at = p.retire_at, "previous token key published until its overlap ends");
    }
    let endorsements = encode_endorsements(&load_endorsements(dir)?, dir)?;
    Ok(TokenKeys {
        current,
        previous,
        endorsements,
    })
}

/// Rotate the token key in `dir` at `now`: the current key's public key is
/// kept as the previous key (published for `overlap_secs`), and a new key
/// becomes the signing key. Refused while an earlier previous key is still
/// inside its overlap. Takes effect when the broker next starts.
pub fn rotate(dir: &Path, overlap_secs: i64, now: i64) -> Result<Rotation, KeyError> {
    let path = dir.join(TOKEN_KEY_FILE);
    let old = load(&path)?.ok_or_else(|| KeyError::NoCurrentKey { path: path.clone() })?;
    if let Some(p) = load_previous(dir, overlap_secs)? {
        if now < p.retire_at {
            return Err(KeyError::OverlapNotOver {
                kid: p.key.kid,
                retire_at: p.retire_at,
            });
        }
    }
    let key_error = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Key { path, source }
    };
    let previous_path = dir.join(PREVIOUS_TOKEN_KEY_FILE);
    let public = KeySet {
        keys: vec![old.verifying_key()],
    }
    .to_cose_key_set()
    .map_err(key_error(&previous_path))?;
    // Order matters for a crash in between: the time (ignored without a
    // previous key), then the old public key (harmless while it is still the
    // current key too), then the new key.
    private_file::write(
        &dir.join(PREVIOUS_ROTATED_AT_FILE),
        now.to_string().as_bytes(),
    )?;
    private_file::write(&previous_path, &public)?;
    let new = SigningKey::generate().map_err(key_error(&path))?;
    let pem = new.to_pkcs8_pem().map_err(key_error(&path))?;
    // The old key vouches for the new one before the new one exists on
    // disk: a crash here leaves an endorsement of a key nobody holds, which
    // is harmless.
    let endorsements_path = dir.join(ENDORSEMENTS_FILE);
    let mut chain = load_endorsements(dir)?;
    chain.push(
        endorsement::endorse(&old, &new.verifying_key()).map_err(key_error(&endorsements_path))?,
    );
    let keep_from = chain.len().saturating_sub(endorsement::MAX_ENDORSEMENTS);
    let chain = chain.split_off(keep_from);
    private_file::write(&endorsements_path, &encode_endorsements(&chain, dir)?)?;
    private_file::write(&path, pem.as_bytes())?;
    tracing::info!(old_kid = %old.kid(), new_kid = %new.kid(), "rotated the token signing key");
    Ok(Rotation {
        old_kid: old.kid(),
        new_kid: new.kid(),
        retire_at: now.saturating_add(overlap_secs),
    })
}

/// Retire the previous token key now (remove its files); returns its `kid`,
/// or `None` when there was none. Takes effect when the broker next starts.
pub fn retire(dir: &Path) -> Result<Option<String>, KeyError> {
    let kid = load_previous(dir, 0)?.map(|p| p.key.kid);
    for name in [PREVIOUS_TOKEN_KEY_FILE, PREVIOUS_ROTATED_AT_FILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(KeyError::Io { path, source }),
        }
    }
    Ok(kid)
}

/// The previous key and its times, if there is one.
fn load_previous(dir: &Path, overlap_secs: i64) -> Result<Option<PreviousKey>, KeyError> {
    let path = dir.join(PREVIOUS_TOKEN_KEY_FILE);
    let bytes = match private_file::read(&path) {
        Ok(b) => b,
        Err(PrivateFileError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let key_error = |source| KeyError::Key {
        path: path.clone(),
        source,
    };
    let set = KeySet::from_cose_key_set(&bytes).map_err(key_error)?;
    let key = match <[VerifyingKey; 1]>::try_from(set.keys) {
        Ok([k]) => k,
        Err(_) => return Err(key_error(TokenError::PemMalformed)),
    };
    let at_path = dir.join(PREVIOUS_ROTATED_AT_FILE);
    let rotated_at = private_file::read(&at_path)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or(KeyError::RotatedAtMalformed { path: at_path })?;
    Ok(Some(PreviousKey {
        key,
        rotated_at,
        retire_at: rotated_at.saturating_add(overlap_secs),
    }))
}

/// The rotation endorsements kept in `dir` (none before the first rotation).
fn load_endorsements(dir: &Path) -> Result<Vec<Vec<u8>>, KeyError> {
    let path = dir.join(ENDORSEMENTS_FILE);
    match private_file::read(&path) {
        Ok(bytes) => endorsement::decode_endorsements(&bytes)
            .map_err(|source| KeyError::Key { path, source }),
        Err(PrivateFileError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn encode_endorsements(chain: &[Vec<u8>], dir: &Path) -> Result<Vec<u8>, KeyError> {
    endorsement::encode_endorsements(chain).map_err(|source| KeyError::Key {
        path: dir.join(ENDORSEMENTS_FILE),
        source,
    })
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

    #[test]
    fn rotation_keeps_the_old_public_key_for_the_overlap_then_retires_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        assert!(matches!(
            rotate(dir, 100, 1000),
            Err(KeyError::NoCurrentKey { .. })
        ));
        let first = load_token_keys(dir, 100, 1000).unwrap();
        assert!(first.previous.is_none());
        let r = rotate(dir, 100, 1000).unwrap();
        assert_eq!(r.old_kid, first.current.kid());
        assert_ne!(r.new_kid, r.old_kid);
        assert_eq!(r.retire_at, 1100);
        // A second rotation inside the overlap would unpublish the old key.
        match rotate(dir, 100, 1050) {
            Err(KeyError::OverlapNotOver { kid, retire_at }) => {
                assert_eq!((kid.as_str(), retire_at), (r.old_kid.as_str(), 1100));
            }
            other => panic!("expected OverlapNotOver, got {other:?}"),
        }
        // Only the public key is kept, privately.
        use std::os::unix::fs::PermissionsExt;
        for name in [PREVIOUS_TOKEN_KEY_FILE, PREVIOUS_ROTATED_AT_FILE] {
            let mode = std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let during = load_token_keys(dir, 100, 1099).unwrap();
        assert_eq!(during.current.kid(), r.new_kid);
        let previous = during.previous.unwrap();
        assert_eq!(previous.key.kid, r.old_kid);
        assert_eq!((previous.rotated_at, previous.retire_at), (1000, 1100));
        // The first start after the overlap removes its files.
        let after = load_token_keys(dir, 100, 1100).unwrap();
        assert!(after.previous.is_none());
        assert!(!dir.join(PREVIOUS_TOKEN_KEY_FILE).exists());
        assert!(!dir.join(PREVIOUS_ROTATED_AT_FILE).exists());
        // Now a new rotation is allowed; an explicit retire ends its overlap.
        let r2 = rotate(dir, 100, 1200).unwrap();
        assert_eq!(r2.old_kid, r.new_kid);
        assert_eq!(retire(dir).unwrap(), Some(r2.old_kid));
        assert_eq!(retire(dir).unwrap(), None);
        let retired = load_token_keys(dir, 100, 1201).unwrap();
        assert_eq!(retired.current.kid(), r2.new_kid);
        assert!(retired.previous.is_none());
        // Both rotations left an endorsement: a holder of the first key
        // reaches the current one, a stranger's key set does not.
        let chain = endorsement::decode_endorsements(&retired.endorsements).unwrap();
        assert_eq!(chain.len(), 2);
        let pinned = KeySet::new(vec![first.current.verifying_key()]).unwrap();
        let served = KeySet::new(vec![retired.current.verifying_key()]).unwrap();
        assert_eq!(
            endorsement::advance_pinned(&pinned, &served, &chain).unwrap(),
            served
        );
    }

    #[test]
    fn a_malformed_rotation_time_is_refused() {
        let t = tempfile::tempdir().unwrap();
        load_or_generate(t.path()).unwrap();
        rotate(t.path(), 10, 5).unwrap();
        private_file::write(&t.path().join(PREVIOUS_ROTATED_AT_FILE), b"soon").unwrap();
        assert!(matches!(
            load_token_keys(t.path(), 10, 6),
            Err(KeyError::RotatedAtMalformed { .. })
        ));
    }
}
