//! Private files (keys, secrets): written atomically with mode 0600, read
//! only when group and others have no access.
//!
//! A write goes to a uniquely named temp file in the target's directory,
//! created with mode 0600 from the start (`create_new`, so never through an
//! existing file or link), is fsynced, renamed (or linked, for
//! [`write_new`]) over the target, and the directory is fsynced. A reader
//! never sees half a file, and a temp file left by a crash has a name no
//! later write uses, so it never blocks one.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The mode every private file is created with.
pub const PRIVATE_MODE: u32 = 0o600;

/// How many temp names are tried before giving up (each try is a new name).
const TEMP_NAME_ATTEMPTS: u32 = 16;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not exist")]
    NotFound { path: PathBuf },
    #[error("{path} already exists")]
    AlreadyExists { path: PathBuf },
    #[error("{path} is readable by group or others (mode {mode:o}); expected 0600")]
    Permissions { path: PathBuf, mode: u32 },
}

impl PrivateFileError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| PrivateFileError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Reads `path`, refusing it when group or others have any access to it
/// (the mode is checked on the opened file, so it is the file that is read).
pub fn read(path: &Path) -> Result<Vec<u8>, PrivateFileError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PrivateFileError::NotFound {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(PrivateFileError::io(path)(e)),
    };
    let mode = file
        .metadata()
        .map_err(PrivateFileError::io(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(PrivateFileError::io(path))?;
    Ok(bytes)
}

/// Atomically writes `bytes` to `path` with mode 0600, replacing any file
/// there. The directory must exist.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), PrivateFileError> {
    let (dir, tmp) = write_temp(path, bytes)?;
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(PrivateFileError::Io {
            path: path.to_owned(),
            source,
        });
    }
    sync_dir(&dir)
}

/// Atomically writes `bytes` to a new file `path` with mode 0600; fails with
/// [`PrivateFileError::AlreadyExists`] (leaving it untouched) when `path`
/// exists. The directory must exist.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), PrivateFileError> {
    let (dir, tmp) = write_temp(path, bytes)?;
    // link(2) never replaces its target: the complete file appears, or nothing.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(&dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(PrivateFileError::AlreadyExists {
                path: path.to_owned(),
            })
        }
        Err(source) => Err(PrivateFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes and fsyncs a new temp file next to `path`; returns its directory
/// and name. The temp file is removed again if writing it fails.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<(PathBuf, PathBuf), PrivateFileError> {
    let name = path.file_name().ok_or_else(|| PrivateFileError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(temp_name(name));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_MODE)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                attempt += 1;
                if attempt >= TEMP_NAME_ATTEMPTS {
                    return Err(PrivateFileError::Io {
                        path: tmp,
                        source: e,
                    });
                }
            }
            Err(source) => return Err(PrivateFileError::Io { path: tmp, source }),
        }
    };
    if let Err(source) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(PrivateFileError::Io { path: tmp, source });
    }
    Ok((dir, tmp))
}

/// `.<name>.<pid>.<nanoseconds>.<counter>.tmp`: unique per process and call.
fn temp_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.{nanos}.{n}.tmp", std::process::id()));
    tmp
}

/// Makes the rename durable.
fn sync_dir(dir: &Path) -> Result<(), PrivateFileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PrivateFileError::io(dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_creates_a_0600_file_and_leaves_no_temp_file() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("key.pem");
        write(&path, b"secret").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).unwrap(), b"secret");
        assert_eq!(entries(t.path()), ["key.pem"]);
    }

    #[test]
    fn write_replaces_and_write_new_does_not() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(read(&path).unwrap(), b"two");
        match write_new(&path, b"three") {
            Err(PrivateFileError::AlreadyExists { path: p }) => assert_eq!(p, path),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(read(&path).unwrap(), b"two");
        assert_eq!(entries(t.path()), ["state.json"]);
        let fresh = t.path().join("fresh");
        write_new(&fresh, b"new").unwrap();
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(read(&fresh).unwrap(), b"new");
    }

    #[test]
    fn replacing_a_wide_file_yields_a_private_one() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("k");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn stale_temp_files_from_an_interrupted_write_do_not_block() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("key.pem");
        // What a crash between create and rename leaves behind, including a
        // temp file of this very process with the next counter value.
        let stale = t.path().join(".key.pem.tmp");
        std::fs::write(&stale, b"half").unwrap();
        let next = t.path().join(temp_name(path.file_name().unwrap()));
        std::fs::write(&next, b"half").unwrap();
        write_new(&path, b"whole").unwrap();
        assert_eq!(read(&path).unwrap(), b"whole");
        write(&path, b"again").unwrap();
        assert_eq!(read(&path).unwrap(), b"again");
    }

    #[test]
    fn read_refuses_group_or_other_access_naming_path_and_mode() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("k");
        write(&path, b"x").unwrap();
        for wide in [0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wide)).unwrap();
            match read(&path) {
                Err(PrivateFileError::Permissions { path: p, mode }) => {
                    assert_eq!((p.as_path(), mode), (path.as_path(), wide));
                }
                other => panic!("mode {wide:o}: expected Permissions, got {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read(&path).unwrap(), b"x");
    }

    #[test]
    fn read_of_a_missing_file_is_not_found() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("missing");
        match read(&path) {
            Err(PrivateFileError::NotFound { path: p }) => assert_eq!(p, path),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn write_into_a_missing_directory_fails_and_names_the_temp_path() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("no-such-dir").join("k");
        match write(&path, b"x") {
            Err(PrivateFileError::Io { path: p, .. }) => {
                assert_eq!(p.parent(), path.parent());
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
