//! One exchange with the attester daemon over its Unix socket: connect,
//! check who serves the socket, send one request line (with the program's
//! sealed image for a `launch`), read one answer.

use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::protocol::{WorkloadRequest, WorkloadResponse, WorkloadToken, MAX_MESSAGE_BYTES};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadApiError {
    #[error("workload socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The socket is served by a process of another unprivileged user: it
    /// is not the attester daemon (which runs as root or as the caller).
    #[error("workload socket {path} is served by uid {actual}; expected {expected}")]
    UntrustedDaemon {
        path: PathBuf,
        expected: String,
        actual: u32,
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
/// sealed memory file of the program about to be exec'd. The daemon hashes
/// that memory file itself and mints only for that digest, so a launcher
/// cannot name a digest it will not run.
pub fn request_launch(
    socket: &Path,
    req: &WorkloadRequest,
    image: BorrowedFd<'_>,
    timeout: Duration,
) -> Result<WorkloadToken, WorkloadApiError> {
    exchange(socket, req, Some(image), timeout)
}

/// Refuse a socket whose server is neither root nor this process's uid
/// (`SO_PEERCRED` of the connected socket).
fn check_server(s: &UnixStream, socket: &Path) -> Result<(), WorkloadApiError> {
    let cred = rustix::net::sockopt::socket_peercred(s).map_err(|e| WorkloadApiError::Io {
        path: socket.to_owned(),
        source: e.into(),
    })?;
    let me = rustix::process::getuid().as_raw();
    let server = cred.uid.as_raw();
    if server == 0 || server == me {
        return Ok(());
    }
    Err(WorkloadApiError::UntrustedDaemon {
        path: socket.to_owned(),
        expected: format!("uid 0 or {me}"),
        actual: server,
    })
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
    check_server(&s, socket)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    /// A refusal from the daemon is typed; an answer that is not the
    /// protocol's is a typed error too, never a token.
    #[test]
    fn refusals_and_garbage_answers_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                r#"{"error":{"code":"caller_unknown","message":"no"}}"#,
                "not json",
            ] {
                let (mut c, _) = listener.accept().unwrap();
                let mut line = String::new();
                std::io::BufReader::new(&c).read_line(&mut line).unwrap();
                assert!(line.starts_with(r#"{"op":"token""#), "{line}");
                c.write_all(answer.as_bytes()).unwrap();
            }
        });
        let req = WorkloadRequest::Token {
            cnf: None,
            workload: None,
        };
        let t = Duration::from_secs(5);
        match request(&path, &req, t) {
            Err(WorkloadApiError::Refused { code, .. }) => assert_eq!(code, "caller_unknown"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            request(&path, &req, t),
            Err(WorkloadApiError::BadAnswer(_))
        ));
        server.join().unwrap();
    }
}
