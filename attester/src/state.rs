//! What the attester keeps between runs: its host id, the EK algorithm it
//! enrolled with, the AK blob (EK-wrapped; useless outside this TPM) and
//! the secret its request-signing key is derived from.
//! Written atomically with mode 0600 (`private-file`); refused when group
//! or others can read it.

use std::path::{Path, PathBuf};

use private_file::PrivateFileError;
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
    #[error("state file: {0}")]
    File(PrivateFileError),
}

impl From<PrivateFileError> for StateError {
    fn from(e: PrivateFileError) -> Self {
        match e {
            PrivateFileError::NotFound { path } => StateError::NotEnrolled { path },
            PrivateFileError::Io { path, source } => StateError::Io { path, source },
            other => StateError::File(other),
        }
    }
}

impl AttesterState {
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let bytes = private_file::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        Ok(private_file::write(&path, &json)?)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::tpm::AkAlg;

    fn state() -> AttesterState {
        AttesterState {
            host_id: "host-1".to_owned(),
            ek_alg: EkAlg::Rsa2048,
            ak: AkBlob {
                alg: AkAlg::EccP256,
                public_tpm2b: vec![0, 1, 2],
                private: vec![3, 4],
                name: vec![0, 0x0b, 5],
            },
            request_key_secret: Some("00ff".to_owned()),
        }
    }

    #[test]
    fn a_stale_temp_file_from_an_interrupted_save_does_not_block() {
        let t = tempfile::tempdir().unwrap();
        // Temp files a crash between create and rename can leave behind.
        std::fs::write(t.path().join(format!(".{STATE_FILE}.tmp")), b"{").unwrap();
        std::fs::write(t.path().join(format!(".{STATE_FILE}.1.2.3.tmp")), b"{").unwrap();
        let s = state();
        s.save(t.path()).unwrap();
        assert_eq!(AttesterState::load(t.path()).unwrap(), s);
        let mut updated = s.clone();
        updated.request_key_secret = None;
        updated.save(t.path()).unwrap();
        assert_eq!(AttesterState::load(t.path()).unwrap(), updated);
        let path = t.path().join(STATE_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn missing_state_is_not_enrolled_and_a_readable_one_is_refused() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            AttesterState::load(t.path()),
            Err(StateError::NotEnrolled { .. })
        ));
        state().save(t.path()).unwrap();
        let path = t.path().join(STATE_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AttesterState::load(t.path()),
            Err(StateError::File(PrivateFileError::Permissions {
                mode: 0o644,
                ..
            }))
        ));
    }
}
