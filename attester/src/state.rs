//! What the attester keeps between runs: its host id, the EK algorithm it
//! enrolled with, the AK blob (EK-wrapped; useless outside this TPM) and
//! the secret its request-signing key is derived from.
//! Written atomically with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tpm::{AkBlob, EkAlg};

/// File name inside the state directory.
pub const STATE_FILE: &str = "attester.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttesterState {
    pub host_id: String,
    pub ek_alg: EkAlg,
    pub ak: AkBlob,
    /// Secret (hex) from which the TPM re-derives the request-signing key
    /// (see `tpm::request_key`); created on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_key_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("not enrolled: {path} does not exist (run `writ-attester enroll` first)")]
    NotEnrolled { path: PathBuf },
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl AttesterState {
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotEnrolled { path })
            }
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let json = serde_json::to_vec_pretty(self).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&json)
            .and_then(|_| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}
