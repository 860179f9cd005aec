//! The identity cache: a directory holding the test EK CA and the keys of
//! every simulated TPM made so far, so keys are generated once and a fleet
//! keeps its identities across runs (the broker stored their AKs at
//! enrollment).
//!
//! ```text
//! DIR/ek-ca.key    the CA's PKCS#8 key (0600)
//! DIR/ek-ca.pem    the CA certificate: give it to the broker as trust.ek_roots
//! DIR/tpms.bin     "writ-loadgen-tpms-v1\n", then 129 bytes per TPM:
//!                  EK scalar (32) ‖ AK scalar (32) ‖ AK point (65) (0600)
//! ```

use std::path::{Path, PathBuf};

use super::ek_cert::TestCa;
use super::{SoftTpmError, TpmSecrets};

const MAGIC: &[u8] = b"writ-loadgen-tpms-v1\n";
const RECORD: usize = 32 + 32 + 65;
/// Most simulated TPMs one cache holds (about 130 MB).
pub const MAX_TPMS: usize = 1_000_000;

/// The CA and the first `count` TPM identities of a cache directory.
#[derive(Debug)]
pub struct Identities {
    pub ca: TestCa,
    pub tpms: Vec<TpmSecrets>,
    /// The CA certificate file.
    pub ca_pem_path: PathBuf,
}

impl Identities {
    /// Open (or create) the cache in `dir` and make sure it holds at least
    /// `count` identities, generating and saving the missing ones.
    pub fn open(dir: &Path, count: usize, now: i64) -> Result<Identities, SoftTpmError> {
        if count > MAX_TPMS {
            return Err(SoftTpmError::Malformed {
                field: "host count",
                expected: format!("at most {MAX_TPMS}"),
                actual: count.to_string(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, &e))?;
        let key_path = dir.join("ek-ca.key");
        let ca_pem_path = dir.join("ek-ca.pem");
        let ca = match private_file::read(&key_path) {
            Ok(pkcs8) => {
                let pem = std::fs::read(&ca_pem_path).map_err(|e| cache_error(&ca_pem_path, &e))?;
                TestCa::load(&pkcs8, pem_to_der(&pem, &ca_pem_path)?)?
            }
            Err(private_file::PrivateFileError::NotFound { .. }) => {
                let (ca, pkcs8) = TestCa::generate(now)?;
                private_file::write(&key_path, &pkcs8).map_err(|e| cache_error(&key_path, &e))?;
                std::fs::write(&ca_pem_path, ca.cert_pem())
                    .map_err(|e| cache_error(&ca_pem_path, &e))?;
                ca
            }
            Err(e) => return Err(cache_error(&key_path, &e)),
        };

        let tpms_path = dir.join("tpms.bin");
        let mut tpms = match private_file::read(&tpms_path) {
            Ok(bytes) => decode(&bytes, &tpms_path)?,
            Err(private_file::PrivateFileError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(cache_error(&tpms_path, &e)),
        };
        if tpms.len() < count {
            while tpms.len() < count {
                tpms.push(TpmSecrets::generate()?);
            }
            private_file::write(&tpms_path, &encode(&tpms))
                .map_err(|e| cache_error(&tpms_path, &e))?;
        }
        tpms.truncate(count);
        Ok(Identities {
            ca,
            tpms,
            ca_pem_path,
        })
    }
}

fn cache_error(path: &Path, e: &dyn std::fmt::Display) -> SoftTpmError {
    SoftTpmError::Cache {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn encode(tpms: &[TpmSecrets]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + tpms.len() * RECORD);
    out.extend_from_slice(MAGIC);
    for t in tpms {
        out.extend_from_slice(&t.ek_scalar);
        out.extend_from_slice(&t.ak_scalar);
        out.extend_from_slice(&t.ak_point);
    }
    out
}

fn decode(bytes: &[u8], path: &Path) -> Result<Vec<TpmSecrets>, SoftTpmError> {
    let body = bytes
        .strip_prefix(MAGIC)
        .filter(|b| b.len() % RECORD == 0)
        .ok_or_else(|| SoftTpmError::Cache {
            path: path.display().to_string(),
            reason: format!(
                "expected the v1 header and whole {RECORD}-byte records, got {} bytes",
                bytes.len()
            ),
        })?;
    body.chunks_exact(RECORD)
        .map(|r| {
            Ok(TpmSecrets {
                ek_scalar: super::fixed(&r[..32], "EK scalar")?,
                ak_scalar: super::fixed(&r[32..64], "AK scalar")?,
                ak_point: super::fixed(&r[64..], "AK point")?,
            })
        })
        .collect()
}

fn pem_to_der(pem: &[u8], path: &Path) -> Result<Vec<u8>, SoftTpmError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD
        .decode(body.trim())
        .map_err(|e| cache_error(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_grows_and_keeps_identities() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identities::open(dir.path(), 2, 1_800_000_000).unwrap();
        let b = Identities::open(dir.path(), 3, 1_800_000_000).unwrap();
        assert_eq!(a.tpms[..], b.tpms[..2]);
        assert_eq!(b.tpms.len(), 3);
        assert_eq!(a.ca.cert_der, b.ca.cert_der);
        let c = Identities::open(dir.path(), 1, 1_800_000_000).unwrap();
        assert_eq!(c.tpms[..], a.tpms[..1]);
        std::fs::write(dir.path().join("tpms.bin"), b"garbage").unwrap();
        assert!(matches!(
            Identities::open(dir.path(), 1, 1_800_000_000),
            Err(SoftTpmError::Cache { .. })
        ));
    }
}
