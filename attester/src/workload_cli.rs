//! `writ-attester token` and `writ-attester proof`: a token and proofs of
//! possession for workloads that are not written in Rust (shell, Python,
//! Go …), through the daemon's socket.
//!
//! `token --workload W` asks the daemon for W's token with the daemon's
//! prepared key (the daemon knows the caller by uid and executable: the
//! `writ-attester` binary, so its configuration lists W for that uid and
//! that binary's digest), checks it like `run` does, writes the key and the
//! token to `W.pem` and `W.token` in the runtime directory (0600, in a 0700
//! directory) and prints the token (base64url). `proof` prints the
//! `Writ-PoP` header for one request, signed with that key (or, inside a
//! workload started by `run`, with `WRIT_KEY` for `WRIT_TOKEN`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use private_file::PrivateFileError;
use verifier_lib::token::SigningKey;
use writ_workload::proof::ProofTargetError;

use crate::commands::Settings;
use crate::launch::{self, LaunchError};
use crate::program::TOKEN_ENV;
use crate::workload_api::{self, WorkloadRequest};
use crate::workload_key::{self, KeyFileError, KEY_ENV};

/// Largest `--body` file signed.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofCommandError {
    #[error("{0}")]
    Key(#[from] KeyFileError),
    #[error("token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: PrivateFileError,
    },
    #[error("no token: pass --workload W (after `writ-attester token --workload W`) or run inside a workload started by `writ-attester run` ({TOKEN_ENV}, {KEY_ENV})")]
    NoToken,
    #[error("the token is not base64url")]
    TokenMalformed,
    #[error("{0}")]
    Url(#[from] ProofTargetError),
    #[error("--body {path}: {source}")]
    Body {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--body {path} is larger than {max} bytes")]
    BodyTooLarge { path: PathBuf, max: u64 },
    #[error("proof: {0}")]
    Pop(#[from] verifier_lib::pop::PopError),
}

/// File names of workload `w`'s key and token in the runtime directory.
fn files(dir: &Path, workload: &str) -> (PathBuf, PathBuf) {
    let base = workload.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    (
        dir.join(format!("{base}.pem")),
        dir.join(format!("{base}.token")),
    )
}

/// `token --workload W`: the token (base64url) after writing its key and
/// itself to the runtime directory.
pub fn token(
    s: &Settings,
    workload: &str,
    socket: &Path,
    runtime_dir: Option<&Path>,
) -> Result<String, LaunchError> {
    let t = workload_api::request(
        socket,
        &WorkloadRequest::Token {
            cnf: None,
            workload: Some(workload.to_owned()),
        },
        Duration::from_secs(60),
    )?;
    let (_, key) = launch::check_daemon_answer(&s.issuer, workload, &t)?;
    let dir = workload_key::runtime_dir(runtime_dir)?;
    workload_key::ensure_private_dir(&dir)?;
    let (key_file, token_file) = files(&dir, workload);
    let encoded = URL_SAFE_NO_PAD.encode(&t.token);
    let pem = key.to_pkcs8_pem().map_err(KeyFileError::from)?;
    private_file::write(&key_file, pem.as_bytes()).map_err(KeyFileError::from)?;
    private_file::write(&token_file, encoded.as_bytes()).map_err(KeyFileError::from)?;
    Ok(encoded)
}

/// Where `proof` takes the token and key from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `W.token` and `W.pem` in the runtime directory (from `token`).
    Workload {
        workload: String,
        runtime_dir: Option<PathBuf>,
    },
    /// `WRIT_TOKEN` and `WRIT_KEY` (a workload started by `run`).
    Environment,
}

fn load(credentials: &Credentials) -> Result<(Vec<u8>, SigningKey), ProofCommandError> {
    let (encoded, key_file) = match credentials {
        Credentials::Workload {
            workload,
            runtime_dir,
        } => {
            let dir = workload_key::runtime_dir(runtime_dir.as_deref())?;
            let (key_file, token_file) = files(&dir, workload);
            let bytes =
                private_file::read(&token_file).map_err(|source| ProofCommandError::TokenFile {
                    path: token_file.clone(),
                    source,
                })?;
            (String::from_utf8_lossy(&bytes).into_owned(), key_file)
        }
        Credentials::Environment => {
            let token = std::env::var(TOKEN_ENV).map_err(|_| ProofCommandError::NoToken)?;
            let key = std::env::var_os(KEY_ENV).ok_or(ProofCommandError::NoToken)?;
            (token, PathBuf::from(key))
        }
    };
    let token = URL_SAFE_NO_PAD
        .decode(encoded.trim())
        .map_err(|_| ProofCommandError::TokenMalformed)?;
    Ok((token, workload_key::read_key(&key_file)?))
}

/// `proof`: the `Writ-PoP` header line for `method url` with the body in
/// `body` (none: empty), signed now.
pub fn proof(
    credentials: &Credentials,
    method: &str,
    url: &str,
    body: Option<&Path>,
) -> Result<String, ProofCommandError> {
    let target = writ_workload::proof::request_target(url)?;
    let body = match body {
        None => Vec::new(),
        Some(path) => read_body(path)?,
    };
    let (token, key) = load(credentials)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(writ_workload::pop_header(
        &token, &key, method, &target, &body, now,
    )?)
}

fn read_body(path: &Path) -> Result<Vec<u8>, ProofCommandError> {
    use std::io::Read;
    let err = |source| ProofCommandError::Body {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut body = Vec::new();
    file.take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(err)?;
    if body.len() as u64 > MAX_BODY_BYTES {
        return Err(ProofCommandError::BodyTooLarge {
            path: path.to_owned(),
            max: MAX_BODY_BYTES,
        });
    }
    Ok(body)
}
