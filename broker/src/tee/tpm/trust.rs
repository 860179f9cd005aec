//! Building the EK trust store from configuration: the bundled manufacturer
//! CAs plus operator-supplied roots and intermediates (files or directories).

use std::path::{Path, PathBuf};

use verifier_lib::ekcert::{EkCertError, TrustStore};

use crate::config::TrustConfig;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error("trust anchor {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trust anchor {path}: {source}")]
    Cert { path: PathBuf, source: EkCertError },
    #[error("bundled manufacturer CA store: {0}")]
    Bundled(EkCertError),
}

/// Build the EK trust store the broker verifies enrollments against.
pub fn ek_trust_store(cfg: &TrustConfig) -> Result<TrustStore, TrustError> {
    let mut store = if cfg.bundled_manufacturers {
        TrustStore::manufacturers().map_err(TrustError::Bundled)?
    } else {
        TrustStore::empty()
    };
    for p in &cfg.ek_roots {
        for (path, bytes) in read_certs(p)? {
            store
                .add_root_pem_or_der(&bytes)
                .map_err(|source| TrustError::Cert { path, source })?;
        }
    }
    for p in &cfg.ek_intermediates {
        for (path, bytes) in read_certs(p)? {
            store
                .add_intermediate_pem_or_der(&bytes)
                .map_err(|source| TrustError::Cert { path, source })?;
        }
    }
    Ok(store)
}

/// A file, or every regular file in a directory (sorted, non-recursive).
fn read_certs(p: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, TrustError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TrustError::Io { path, source }
    };
    let meta = std::fs::metadata(p).map_err(io(p))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        for entry in std::fs::read_dir(p).map_err(io(p))? {
            let path = entry.map_err(io(p))?.path();
            if path.is_file() {
                files.push(path);
            }
        }
        files.sort();
    } else {
        files.push(p.to_owned());
    }
    files
        .into_iter()
        .map(|f| std::fs::read(&f).map(|b| (f.clone(), b)).map_err(io(&f)))
        .collect()
}
