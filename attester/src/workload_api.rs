//! The local workload API: a Unix socket served by `writ-attester daemon`.
//! The messages and the client side are in crate `writ-workload`
//! (re-exported here); this module is the daemon's side of the socket.
//!
//! The daemon identifies the caller by `SO_PEERCRED` (pid, uid, gid) and the
//! SHA-256 of `/proc/PID/exe`; `token` is for workloads its configuration
//! lists by (uid, executable digest), `launch` for trusted launchers (the
//! `writ-attester run` binary) that name the program they are about to exec
//! and hand the daemon its sealed memory file (`SCM_RIGHTS`): the daemon
//! hashes that image itself, refuses an image that is not sealed, and mints
//! only for the digest it measured.

use std::io::{BufRead, BufReader, IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use verifier_lib::crypto::HashAlg;

pub use writ_workload::protocol::{
    WorkloadRequest, WorkloadResponse, WorkloadToken, DEFAULT_SOCKET, MAX_MESSAGE_BYTES,
};
pub use writ_workload::socket::{request, request_launch, WorkloadApiError};

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

/// The executable this process runs, measured once: a caller running the
/// same file (device and inode) runs these bytes, because the kernel refuses
/// to open a file for writing while any process executes it (`ETXTBSY`) and
/// this process executes it from start to end. So the daemon does not hash
/// its own binary again for every `writ-attester run` that calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnExecutable {
    dev: u64,
    ino: u64,
    digest: [u8; 32],
}

impl OwnExecutable {
    /// Measure `/proc/self/exe`.
    pub fn measure() -> std::io::Result<Self> {
        let (dev, ino, digest) = measure_exe(&PathBuf::from("/proc/self/exe"))?;
        Ok(OwnExecutable { dev, ino, digest })
    }
}

fn measure_exe(proc_exe: &std::path::Path) -> std::io::Result<(u64, u64, [u8; 32])> {
    let file = std::fs::File::open(proc_exe)?;
    let meta = file.metadata()?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&file).read_to_end(&mut bytes)?;
    let digest: [u8; 32] = HashAlg::Sha256
        .digest(&bytes)
        .try_into()
        .map_err(|_| std::io::Error::other("digest length"))?;
    Ok((meta.dev(), meta.ino(), digest))
}

/// Identify the peer by `SO_PEERCRED` and its executable (hashed, unless it
/// is `own`'s file: then `own`'s digest).
pub fn peer_identity(
    stream: &UnixStream,
    own: Option<&OwnExecutable>,
) -> std::io::Result<PeerIdentity> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    let pid = cred.pid.as_raw_nonzero().get();
    let proc_exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let exe = std::fs::read_link(&proc_exe)?;
    let same_file = |o: &&OwnExecutable| {
        std::fs::metadata(&proc_exe).is_ok_and(|m| m.dev() == o.dev && m.ino() == o.ino)
    };
    let exe_digest = match own.filter(same_file) {
        Some(o) => o.digest,
        None => measure_exe(&proc_exe)?.2,
    };
    Ok(PeerIdentity {
        pid,
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        exe,
        exe_digest,
    })
}
