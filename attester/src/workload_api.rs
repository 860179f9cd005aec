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
    let digest = hash_file(&file, &meta)?;
    Ok((meta.dev(), meta.ino(), digest))
}

fn hash_file(file: &std::fs::File, meta: &std::fs::Metadata) -> std::io::Result<[u8; 32]> {
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    let mut reader = file;
    reader.read_to_end(&mut bytes)?;
    HashAlg::Sha256
        .digest(&bytes)
        .try_into()
        .map_err(|_| std::io::Error::other("digest length"))
}

/// What identifies one version of a file: a write changes `ctime` (and
/// `mtime`), a replacement changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    uid: u32,
    mode: u32,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            uid: m.uid(),
            mode: m.mode(),
        }
    }

    /// Only root can change this file (root-owned, not group- or
    /// world-writable), and it has not changed for [`SETTLED_SECS`]: a later
    /// change gets a later `ctime` even where the kernel's file timestamps
    /// are coarse (one clock tick).
    fn cacheable(&self, now_secs: i64) -> bool {
        self.uid == 0 && self.mode & 0o022 == 0 && self.ctime.0 <= now_secs - SETTLED_SECS
    }
}

/// Kept digests by (device, inode), with the stamp they were taken at.
type Known = std::collections::HashMap<(u64, u64), (FileStamp, [u8; 32])>;

/// How long a file must be unchanged before its digest is kept.
const SETTLED_SECS: i64 = 2;
/// Digests kept at most (the configured launchers and workloads).
const MEASURED_MAX: usize = 64;

/// Digests of callers' executables, kept while the file is unchanged, so
/// the daemon does not hash a launcher such as `writ-run` (or a workload's
/// interpreter) on every request. Kept only for files only root can change
/// (see [`FileStamp::cacheable`]); any change of the file (a write moves its
/// `ctime`, a package upgrade replaces its inode) misses and measures again.
/// Files anyone else could write to are hashed on every request.
#[derive(Debug, Default)]
pub struct MeasuredExecutables {
    known: std::sync::Mutex<Known>,
}

impl MeasuredExecutables {
    /// SHA-256 of the file `proc_exe` resolves to: from the cache when its
    /// stamp is unchanged, else hashed from the opened file (and kept when
    /// the stamp did not move while hashing and the file is cacheable).
    pub fn digest(&self, proc_exe: &std::path::Path) -> std::io::Result<[u8; 32]> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.digest_at(proc_exe, now)
    }

    fn digest_at(&self, proc_exe: &std::path::Path, now: i64) -> std::io::Result<[u8; 32]> {
        let file = std::fs::File::open(proc_exe)?;
        let meta = file.metadata()?;
        let before = FileStamp::of(&meta);
        let known = |g: &Known| {
            g.get(&(before.dev, before.ino))
                .filter(|(stamp, _)| *stamp == before)
                .map(|(_, d)| *d)
        };
        if let Some(d) = self.with(|g| known(g)) {
            return Ok(d);
        }
        let digest = hash_file(&file, &meta)?;
        let after = FileStamp::of(&file.metadata()?);
        if before == after && before.cacheable(now) {
            self.with(|g| {
                if g.len() >= MEASURED_MAX {
                    g.clear();
                }
                g.insert((before.dev, before.ino), (before, digest));
            });
        }
        Ok(digest)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Known) -> T) -> T {
        match self.known.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// How many digests are kept.
    pub fn len(&self) -> usize {
        self.with(|g| g.len())
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Identify the peer by `SO_PEERCRED` and its executable (hashed, unless it
/// is `own`'s file: then `own`'s digest; or unchanged since `measured`
/// hashed it).
pub fn peer_identity(
    stream: &UnixStream,
    own: Option<&OwnExecutable>,
    measured: &MeasuredExecutables,
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
        None => measured.digest(&proc_exe)?,
    };
    Ok(PeerIdentity {
        pid,
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        exe,
        exe_digest,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sha(b: &[u8]) -> [u8; 32] {
        HashAlg::Sha256.digest(b).try_into().unwrap()
    }

    fn later() -> i64 {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
            + 60
    }

    #[test]
    fn a_changed_executable_is_measured_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("launcher");
        std::fs::write(&f, b"version one").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        let m = MeasuredExecutables::default();
        assert_eq!(m.digest_at(&f, later()).unwrap(), sha(b"version one"));
        let root_owned = std::fs::metadata(&f).unwrap().uid() == 0;
        // Kept only where only root can change the file.
        assert_eq!(m.len(), usize::from(root_owned));
        assert_eq!(m.digest_at(&f, later()).unwrap(), sha(b"version one"));
        // Rewritten in place, same size: the ctime moves (past one coarse
        // timestamp tick), the stamp misses, the new bytes are measured.
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(&f, b"version two").unwrap();
        assert_eq!(m.digest_at(&f, later()).unwrap(), sha(b"version two"));
        // Replaced by a new file (a package upgrade): a new inode.
        let tmp = dir.path().join("new");
        std::fs::write(&tmp, b"version three").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_eq!(m.digest_at(&f, later()).unwrap(), sha(b"version three"));
    }

    #[test]
    fn writable_or_fresh_files_are_hashed_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tool");
        std::fs::write(&f, b"x").unwrap();
        let m = MeasuredExecutables::default();
        // Just written: not settled, not kept.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(m.digest(&f).unwrap(), sha(b"x"));
        assert!(m.is_empty());
        // Group- or world-writable: never kept.
        for mode in [0o775, 0o757] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(m.digest_at(&f, later()).unwrap(), sha(b"x"));
            assert!(m.is_empty(), "mode {mode:o}");
        }
    }

    #[test]
    fn the_cache_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let m = MeasuredExecutables::default();
        for i in 0..(MEASURED_MAX + 5) {
            let f = dir.path().join(format!("exe{i}"));
            std::fs::write(&f, i.to_string()).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            m.digest_at(&f, later()).unwrap();
            assert!(m.len() <= MEASURED_MAX);
        }
    }
}
