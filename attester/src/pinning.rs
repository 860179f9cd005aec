//! The broker token keys this host trusts (finding 8 of the security
//! review): the key set is pinned when the host enrolls (for an SEV-SNP
//! guest, which has no enrollment, at its first token request) and kept in
//! the state directory. Later a served key is trusted only if it is pinned
//! or endorsed, through a chain of rotations, by a pinned key
//! (`verifier_lib::token::endorsement`). A key set fetched over the same
//! connection as a token therefore cannot vouch for that token.

use std::path::{Path, PathBuf};

use private_file::PrivateFileError;
use verifier_lib::token::{endorsement, KeySet, TokenError};

use crate::client::BrokerClient;

/// File name of the pinned key set (COSE_KeySet) inside the state directory.
pub const PINNED_KEYS_FILE: &str = "broker-keys.cose";

/// Why the broker's key set is not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinningError {
    /// No key set was pinned (the host enrolled before pinning existed).
    #[error("no pinned broker key set at {path}: re-enroll this host (`writ-attester enroll`)")]
    NotPinned { path: PathBuf },
    #[error("pinned broker key set {path}: {source}")]
    File {
        path: PathBuf,
        source: PrivateFileError,
    },
    #[error("pinned broker key set {path}: {source}")]
    Malformed { path: PathBuf, source: TokenError },
    /// The served keys are neither pinned nor endorsed by a pinned key.
    #[error("the broker's key set is not trusted: {0}")]
    Untrusted(TokenError),
    #[error("{0}")]
    Broker(#[from] crate::client::ClientError),
}

/// Pin what the broker serves now (at enrollment), replacing earlier pins.
pub fn pin_served(broker: &BrokerClient, state_dir: &Path) -> Result<KeySet, PinningError> {
    let served = broker.key_set()?;
    save(state_dir, &served)?;
    Ok(served)
}

/// The broker's served keys this host trusts, advancing the pins along the
/// broker's rotation endorsements. With no pins: refused, unless
/// `pin_if_absent` (an SEV-SNP guest's first request), which pins the served
/// set.
pub fn trusted_key_set(
    broker: &BrokerClient,
    state_dir: &Path,
    pin_if_absent: bool,
) -> Result<KeySet, PinningError> {
    let pinned = match load(state_dir)? {
        Some(p) => p,
        None if pin_if_absent => return pin_served(broker, state_dir),
        None => {
            return Err(PinningError::NotPinned {
                path: state_dir.join(PINNED_KEYS_FILE),
            })
        }
    };
    let served = broker.key_set()?;
    let all_pinned = served.keys.iter().all(|k| pinned.find(&k.kid) == Some(k));
    let chain = if all_pinned {
        Vec::new()
    } else {
        let bytes = broker.get_bytes("/v1/keys/endorsements")?;
        endorsement::decode_endorsements(&bytes).map_err(PinningError::Untrusted)?
    };
    let trusted =
        endorsement::advance_pinned(&pinned, &served, &chain).map_err(PinningError::Untrusted)?;
    if trusted != pinned {
        save(state_dir, &trusted)?;
    }
    Ok(trusted)
}

fn load(state_dir: &Path) -> Result<Option<KeySet>, PinningError> {
    let path = state_dir.join(PINNED_KEYS_FILE);
    match private_file::read(&path) {
        Ok(bytes) => KeySet::from_cose_key_set(&bytes)
            .map(Some)
            .map_err(|source| PinningError::Malformed { path, source }),
        Err(PrivateFileError::NotFound { .. }) => Ok(None),
        Err(source) => Err(PinningError::File { path, source }),
    }
}

fn save(state_dir: &Path, keys: &KeySet) -> Result<(), PinningError> {
    let path = state_dir.join(PINNED_KEYS_FILE);
    let bytes = keys
        .to_cose_key_set()
        .map_err(|source| PinningError::Malformed {
            path: path.clone(),
            source,
        })?;
    if let Err(source) = std::fs::create_dir_all(state_dir) {
        return Err(PinningError::File {
            path,
            source: PrivateFileError::Io {
                path: state_dir.to_owned(),
                source,
            },
        });
    }
    private_file::write(&path, &bytes).map_err(|source| PinningError::File { path, source })
}
