//! The local workload API: a Unix socket served by `writ-attester daemon`.
//!
//! One request per connection: a JSON object on one line, answered by one
//! JSON object, then the daemon closes the connection.
//!
//! ```text
//! → {"op":"token","cnf":"<b64url COSE_Key>"}
//! → {"op":"launch","workload":"w","workload_digest":"<b64url>","cnf":"<b64url>"}
//! ← {"token":{"token":"<b64url>","cti":"<b64url>","workload":"w","expires_at":N,"renew_at":N}}
//! ← {"error":{"code":"caller_unknown","message":"..."}}
//! ```
//!
//! The daemon identifies the caller by `SO_PEERCRED` (pid, uid, gid) and the
//! SHA-256 of `/proc/PID/exe`; `token` is for workloads its configuration
//! lists by (uid, executable digest), `launch` for trusted launchers (the
//! `writ-attester run` binary) that name the program they are about to exec.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use verifier_lib::api::b64;
use verifier_lib::crypto::HashAlg;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/writ/attester.sock";
/// Largest request or response line accepted.
pub const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkloadRequest {
    /// A token for the calling workload itself.
    Token {
        #[serde(with = "b64")]
        cnf: Vec<u8>,
    },
    /// A token for a program a trusted launcher is about to exec.
    Launch {
        workload: String,
        #[serde(with = "b64")]
        workload_digest: Vec<u8>,
        #[serde(with = "b64")]
        cnf: Vec<u8>,
    },
}

/// A token handed out by the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkloadToken {
    #[serde(with = "b64")]
    pub token: Vec<u8>,
    #[serde(with = "b64")]
    pub cti: Vec<u8>,
    pub workload: String,
    pub expires_at: i64,
    /// Ask again after this time (≈ 80 % of the lifetime) for a fresh token.
    pub renew_at: i64,
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadResponse {
    Token(WorkloadToken),
    Error { code: String, message: String },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadApiError {
    #[error("workload socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("workload socket: unreadable answer: {0}")]
    BadAnswer(String),
    #[error("daemon refused: {code}: {message}")]
    Refused { code: String, message: String },
}

/// Ask the daemon at `socket`.
pub fn request(
    socket: &Path,
    req: &WorkloadRequest,
    timeout: Duration,
) -> Result<WorkloadToken, WorkloadApiError> {
    let io = |source| WorkloadApiError::Io {
        path: socket.to_owned(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_vec(req).map_err(|e| WorkloadApiError::BadAnswer(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line).map_err(io)?;
    s.shutdown(std::net::Shutdown::Write).map_err(io)?;
    let mut answer = Vec::new();
    s.take(MAX_MESSAGE_BYTES)
        .read_to_end(&mut answer)
        .map_err(io)?;
    match serde_json::from_slice::<WorkloadResponse>(&answer) {
        Ok(WorkloadResponse::Token(t)) => Ok(t),
        Ok(WorkloadResponse::Error { code, message }) => {
            Err(WorkloadApiError::Refused { code, message })
        }
        Err(e) => Err(WorkloadApiError::BadAnswer(e.to_string())),
    }
}

/// Who is on the other end of a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// `/proc/PID/exe` as resolved.
    pub exe: PathBuf,
    /// SHA-256 of the executable's contents.
    pub exe_digest: [u8; 32],
}

/// Identify the peer by `SO_PEERCRED` and its executable.
pub fn peer_identity(stream: &UnixStream) -> std::io::Result<PeerIdentity> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    let pid = cred.pid.as_raw_nonzero().get();
    let proc_exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let exe = std::fs::read_link(&proc_exe)?;
    let bytes = std::fs::read(&proc_exe)?;
    let exe_digest: [u8; 32] = HashAlg::Sha256
        .digest(&bytes)
        .try_into()
        .map_err(|_| std::io::Error::other("digest length"))?;
    Ok(PeerIdentity {
        pid,
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        exe,
        exe_digest,
    })
}
