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
//! `writ-attester run` binary) that name the program they are about to exec
//! and hand the daemon its sealed memory file (`SCM_RIGHTS`): the daemon
//! hashes that image itself, refuses an image that is not sealed, and mints
//! only for the digest it measured.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
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

/// Ask the daemon at `socket` (a `token` request: the daemon measures the
/// caller's own executable).
pub fn request(
    socket: &Path,
    req: &WorkloadRequest,
    timeout: Duration,
) -> Result<WorkloadToken, WorkloadApiError> {
    exchange(socket, req, None, timeout)
}

/// Ask the daemon at `socket` for a `launch` token, handing it `image`: the
/// sealed memory file of the program about to be exec'd (see
/// [`crate::program::Program::image`]). The daemon hashes that memory file
/// itself and mints only for that digest, so a launcher cannot name a digest
/// it will not run.
pub fn request_launch(
    socket: &Path,
    req: &WorkloadRequest,
    image: BorrowedFd<'_>,
    timeout: Duration,
) -> Result<WorkloadToken, WorkloadApiError> {
    exchange(socket, req, Some(image), timeout)
}

fn exchange(
    socket: &Path,
    req: &WorkloadRequest,
    image: Option<BorrowedFd<'_>>,
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
    let sent = match image {
        Some(fd) => {
            let fds = [fd];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            control.push(SendAncillaryMessage::ScmRights(&fds));
            rustix::net::sendmsg(&s, &[IoSlice::new(&line)], &mut control, SendFlags::empty())
                .map_err(|e| io(e.into()))?
        }
        None => 0,
    };
    s.write_all(line.get(sent..).unwrap_or_default())
        .map_err(io)?;
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

/// Read one request line (at most [`MAX_MESSAGE_BYTES`]) and the descriptor
/// sent with it, if any (at most one is kept; the kernel closes the rest).
pub fn read_request(stream: &UnixStream) -> std::io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut image = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if image.is_none() {
                image = fds.next();
            }
        }
    }
    buf.truncate(got.bytes);
    if !buf.contains(&b'\n') && got.bytes > 0 {
        let room = MAX_MESSAGE_BYTES.saturating_sub(buf.len() as u64);
        let mut rest = BufReader::new(stream.take(room));
        rest.read_until(b'\n', &mut buf)?;
    }
    let end = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    buf.truncate(end);
    Ok((buf, image))
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
