//! The workload program `run` measures and executes, and the environment it
//! starts with. The bytes executed are the bytes hashed:
//!
//! 1. [`resolve_program`] opens the file once and copies it, from that open
//!    descriptor, into an anonymous memory file (`memfd_create`);
//! 2. seals the memory file against any change (`F_SEAL_WRITE`,
//!    `F_SEAL_GROW`, `F_SEAL_SHRINK`, then `F_SEAL_SEAL`);
//! 3. hashes the sealed memory file — that digest is what the token names;
//! 4. [`Program::command`] executes that same memory file
//!    (`/proc/self/fd/N`, the descriptor inherited across exec so that a
//!    `#!` interpreter can open it too).
//!
//! Rewriting, truncating or replacing the file on disk at any point after
//! step 1 changes nothing that runs; nobody, this process included, can
//! change a sealed memory file. See the `run` section of
//! docs/operations.md for the trade-offs.
//!
//! The environment is clean: the workload gets `WRIT_TOKEN` and `WRIT_KEY`
//! from `run` and only the variables named with `--env` ([`WorkloadEnv`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustix::fs::{MemfdFlags, SealFlags};

use crate::error::CommandError;

/// Environment variable carrying the token (base64url, no padding).
pub const TOKEN_ENV: &str = "WRIT_TOKEN";
/// Environment variable naming the workload's key file.
pub const KEY_ENV: &str = crate::workload_key::KEY_ENV;

/// The seals every program image carries.
pub const IMAGE_SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::GROW)
    .union(SealFlags::SHRINK)
    .union(SealFlags::SEAL);

/// A workload executable: resolved, copied into a sealed memory file, and
/// hashed from that memory file.
#[derive(Debug, Clone)]
pub struct Program {
    /// The file it was read from (symlinks resolved).
    pub path: PathBuf,
    /// SHA-256 of the sealed image, i.e. of exactly what [`Program::command`] runs.
    pub digest: [u8; 32],
    image: Arc<OwnedFd>,
}

/// Resolve `name` like execvp does (PATH lookup when it has no `/`), copy
/// the file into a sealed memory file and hash that (see the module docs).
pub fn resolve_program(name: &str) -> Result<Program, CommandError> {
    seal_program(name)?.measure()
}

/// A program copied into a sealed memory file and not hashed yet: `run`
/// hands it to the daemon, which hashes it (once) and names the digest in
/// the token; without a daemon, [`SealedProgram::measure`] hashes it here.
#[derive(Debug)]
pub struct SealedProgram {
    /// The file it was read from (symlinks resolved).
    pub path: PathBuf,
    image: Arc<OwnedFd>,
}

impl SealedProgram {
    /// The sealed memory file (what a launcher hands the daemon).
    pub fn image(&self) -> std::os::fd::BorrowedFd<'_> {
        self.image.as_fd()
    }

    /// Hash the sealed image.
    pub fn measure(self) -> Result<Program, CommandError> {
        let digest = sha256_of(&self.image).map_err(|source| CommandError::Program {
            path: self.path.display().to_string(),
            source,
        })?;
        Ok(self.measured_as(digest))
    }

    /// The program with the digest the daemon measured of this very image
    /// (a `launch` request hands it over; the daemon mints for what it
    /// hashed, and `run` trusts the daemon: docs/governance.md).
    pub(crate) fn measured_as(self, digest: [u8; 32]) -> Program {
        Program {
            path: self.path,
            digest,
            image: self.image,
        }
    }
}

/// Resolve `name` like execvp does and copy the file into a sealed memory
/// file, without hashing it.
pub fn seal_program(name: &str) -> Result<SealedProgram, CommandError> {
    let candidate = if name.contains('/') {
        PathBuf::from(name)
    } else {
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .find(|c| c.is_file())
            })
            .unwrap_or_default()
            .ok_or_else(|| CommandError::ProgramNotFound {
                name: name.to_owned(),
            })?
    };
    let path = std::fs::canonicalize(&candidate).map_err(|source| CommandError::Program {
        path: candidate.display().to_string(),
        source,
    })?;
    let err = |source| CommandError::Program {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(&path).map_err(err)?;
    if !file.metadata().map_err(err)?.is_file() {
        return Err(CommandError::ProgramNotRegular {
            path: path.display().to_string(),
        });
    }
    let image = sealed_copy(&mut file).map_err(err)?;
    Ok(SealedProgram {
        path,
        image: Arc::new(image),
    })
}

/// A memory file holding what `source` reads, sealed.
fn sealed_copy(source: &mut File) -> std::io::Result<OwnedFd> {
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Kernels ≥ 6.3 with vm.memfd_noexec = 1 make memory files
    // non-executable unless MFD_EXEC is asked for; older kernels reject
    // the flag (EINVAL).
    let memfd = match rustix::fs::memfd_create("writ-workload", base | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("writ-workload", base)?,
        other => other?,
    };
    let mut image = File::from(memfd);
    std::io::copy(source, &mut image)?;
    rustix::fs::fcntl_add_seals(&image, IMAGE_SEALS)?;
    Ok(OwnedFd::from(image))
}

/// Measure a program image another process handed over (the daemon, for a
/// launcher's `launch` request): it must be a memory file carrying every
/// seal of [`IMAGE_SEALS`], so what is hashed here is exactly what the
/// launcher can exec afterwards. Returns its SHA-256.
pub fn measure_sealed_image(image: &OwnedFd) -> Result<[u8; 32], ImageError> {
    let seals = rustix::fs::fcntl_get_seals(image).map_err(|e| ImageError::NotSealable {
        errno: e.raw_os_error(),
    })?;
    if !seals.contains(IMAGE_SEALS) {
        return Err(ImageError::MissingSeals {
            expected: IMAGE_SEALS.bits(),
            actual: seals.bits(),
        });
    }
    sha256_of(image).map_err(ImageError::Read)
}

/// Why a handed-over program image is not measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Not a memory file with sealing (a regular file, a pipe, …): its
    /// contents could change after measurement.
    #[error("program image is not a sealable memory file (errno {errno})")]
    NotSealable { errno: i32 },
    /// A memory file missing one of the seals.
    #[error("program image seals {actual:#x}, expected at least {expected:#x}")]
    MissingSeals { expected: u32, actual: u32 },
    #[error("reading the program image: {0}")]
    Read(std::io::Error),
}

/// SHA-256 of a whole file, read by position (the file offset is untouched).
fn sha256_of(fd: &OwnedFd) -> std::io::Result<[u8; 32]> {
    let file = File::from(fd.try_clone()?);
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        ctx.update(buf.get(..n).unwrap_or_default());
        offset += n as u64;
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .map_err(|_| std::io::Error::other("digest length"))
}

impl Program {
    /// The sealed memory file that is hashed and executed (what a launcher
    /// hands the daemon with its `launch` request).
    pub fn image(&self) -> std::os::fd::BorrowedFd<'_> {
        self.image.as_fd()
    }

    /// The seals the image carries (always [`IMAGE_SEALS`]).
    pub fn image_seals(&self) -> std::io::Result<SealFlags> {
        Ok(rustix::fs::fcntl_get_seals(&*self.image)?)
    }

    /// A command that runs the sealed image with `args` (argv[0] is
    /// [`Program::path`]) in exactly the environment `env`, nothing
    /// inherited. Each command gets its own inheritable duplicate of the
    /// image descriptor; a `#!` script sees `/proc/self/fd/N` as its path.
    pub fn command(
        &self,
        args: &[String],
        env: &WorkloadEnv,
    ) -> Result<WorkloadExec, CommandError> {
        use std::os::unix::process::CommandExt;
        // dup() never sets close-on-exec: this descriptor survives exec.
        let image = rustix::io::dup(&*self.image).map_err(|e| CommandError::Exec {
            path: self.path.display().to_string(),
            source: e.into(),
        })?;
        let mut command =
            std::process::Command::new(format!("/proc/self/fd/{}", image.as_raw_fd()));
        command
            .arg0(self.path.as_os_str())
            .args(args)
            .env_clear()
            .envs(env.vars.iter().map(|(k, v)| (k, v)));
        Ok(WorkloadExec {
            command,
            path: self.path.clone(),
            _image: image,
        })
    }
}

/// A workload ready to start; holds the image descriptor it executes.
#[derive(Debug)]
pub struct WorkloadExec {
    command: std::process::Command,
    path: PathBuf,
    _image: OwnedFd,
}

impl WorkloadExec {
    /// Replace this process with the workload. Only returns on failure.
    pub fn exec(mut self) -> CommandError {
        use std::os::unix::process::CommandExt;
        let source = self.command.exec();
        CommandError::Exec {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Run the workload as a child and collect its output.
    pub fn output(mut self) -> Result<std::process::Output, CommandError> {
        self.command.output().map_err(|source| CommandError::Exec {
            path: self.path.display().to_string(),
            source,
        })
    }
}

/// Variables that make the dynamic loader or the C library load code or
/// files the caller chooses: `LD_*` and these.
const LOADER_VARIABLES: &[&str] = &[
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "MALLOC_TRACE",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
];

/// Whether `name` is a dynamic-loader / C-library loading variable.
pub fn is_loader_variable(name: &str) -> bool {
    name.starts_with("LD_") || LOADER_VARIABLES.contains(&name)
}

/// The launchers' (`writ-attester run`, `writ-run`) options for the
/// workload's environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EnvArgs {
    /// Pass variable NAME from this environment (skipped when unset), or
    /// set NAME=VALUE, to the workload; repeatable. Nothing else is
    /// inherited (not even PATH or HOME).
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub allow_env: Vec<String>,
    /// Allow --env to name dynamic-loader variables (LD_PRELOAD,
    /// LD_LIBRARY_PATH, LD_*, GLIBC_TUNABLES, GCONV_PATH, ...), which
    /// inject code into the measured workload.
    #[arg(long)]
    pub dangerous_allow_loader_env: bool,
}

impl EnvArgs {
    /// The environment these options give, from this process's.
    pub fn workload_env(&self) -> Result<WorkloadEnv, CommandError> {
        WorkloadEnv::from_allow_list(
            &self.allow_env,
            std::env::vars_os(),
            self.dangerous_allow_loader_env,
        )
    }
}

/// The environment a workload starts with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadEnv {
    vars: Vec<(OsString, OsString)>,
}

impl WorkloadEnv {
    /// The variables `specs` name (`NAME`: its value in `caller`, skipped
    /// when unset there; `NAME=VALUE`: that value). Loader variables are
    /// refused unless `dangerous_allow_loader_env`; `WRIT_TOKEN` and
    /// `WRIT_KEY` are always refused (run sets them).
    pub fn from_allow_list<I>(
        specs: &[String],
        caller: I,
        dangerous_allow_loader_env: bool,
    ) -> Result<WorkloadEnv, CommandError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let caller: Vec<(OsString, OsString)> = caller.into_iter().collect();
        let mut env = WorkloadEnv::default();
        for spec in specs {
            let (name, value) = match spec.split_once('=') {
                Some((n, v)) => (n, Some(OsString::from(v))),
                None => (spec.as_str(), None),
            };
            if name.is_empty()
                || name.contains('\0')
                || value.as_ref().is_some_and(|v| v.as_bytes().contains(&0))
            {
                return Err(CommandError::EnvSpec { spec: spec.clone() });
            }
            if name == TOKEN_ENV || name == KEY_ENV {
                return Err(CommandError::ReservedEnv {
                    name: name.to_owned(),
                });
            }
            if is_loader_variable(name) && !dangerous_allow_loader_env {
                return Err(CommandError::LoaderEnv {
                    name: name.to_owned(),
                });
            }
            let value = value.or_else(|| {
                caller
                    .iter()
                    .find(|(k, _)| k.as_os_str() == OsStr::new(name))
                    .map(|(_, v)| v.clone())
            });
            if let Some(v) = value {
                env.set(name, &v);
            }
        }
        Ok(env)
    }

    /// Set (or replace) one variable.
    pub fn set(&mut self, name: &str, value: &OsStr) {
        self.vars.retain(|(k, _)| k.as_os_str() != OsStr::new(name));
        self.vars.push((OsString::from(name), value.to_owned()));
    }

    /// Add what `run` hands every workload: the token and the key path.
    pub fn with_credentials(mut self, token: &[u8], key_path: &Path) -> WorkloadEnv {
        self.set(TOKEN_ENV, OsStr::new(&URL_SAFE_NO_PAD.encode(token)));
        self.set(KEY_ENV, key_path.as_os_str());
        self
    }

    /// The variables, in the order set.
    pub fn vars(&self) -> &[(OsString, OsString)] {
        &self.vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Vec<(OsString, OsString)> {
        [
            ("HOME", "/home/u"),
            ("LD_PRELOAD", "/evil.so"),
            ("PATH", "/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
    }

    #[test]
    fn only_named_variables_pass() {
        let env = WorkloadEnv::from_allow_list(&["PATH".into(), "UNSET".into()], caller(), false)
            .unwrap();
        assert_eq!(env.vars(), &[("PATH".into(), "/bin".into())]);
        let env = WorkloadEnv::from_allow_list(&["MODE=fast".into()], caller(), false).unwrap();
        assert_eq!(env.vars(), &[("MODE".into(), "fast".into())]);
        assert!(WorkloadEnv::from_allow_list(&[], caller(), false)
            .unwrap()
            .vars()
            .is_empty());
    }

    #[test]
    fn loader_variables_need_the_dangerous_switch() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH=/x",
            "GCONV_PATH=/y",
            "LD_AUDIT",
        ] {
            let err = WorkloadEnv::from_allow_list(&[name.into()], caller(), false).unwrap_err();
            assert!(
                matches!(err, CommandError::LoaderEnv { .. }),
                "{name}: {err}"
            );
        }
        let env = WorkloadEnv::from_allow_list(&["LD_PRELOAD".into()], caller(), true).unwrap();
        assert_eq!(env.vars(), &[("LD_PRELOAD".into(), "/evil.so".into())]);
    }

    #[test]
    fn reserved_and_malformed_names_are_refused() {
        for spec in ["WRIT_TOKEN", "WRIT_KEY=/k"] {
            let err = WorkloadEnv::from_allow_list(&[spec.into()], caller(), true).unwrap_err();
            assert!(
                matches!(err, CommandError::ReservedEnv { .. }),
                "{spec}: {err}"
            );
        }
        for spec in ["", "=v"] {
            let err = WorkloadEnv::from_allow_list(&[spec.into()], caller(), false).unwrap_err();
            assert!(
                matches!(err, CommandError::EnvSpec { .. }),
                "{spec:?}: {err}"
            );
        }
    }

    #[test]
    fn credentials_replace_nothing_else() {
        let env = WorkloadEnv::from_allow_list(&["A=1".into()], caller(), false)
            .unwrap()
            .with_credentials(b"\x01\x02", Path::new("/run/k.pem"));
        assert_eq!(
            env.vars(),
            &[
                ("A".into(), "1".into()),
                (TOKEN_ENV.into(), "AQI".into()),
                (KEY_ENV.into(), "/run/k.pem".into())
            ]
        );
    }

    #[test]
    fn image_is_sealed_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, b"#!/bin/sh\necho one\n").unwrap();
        let p = resolve_program(path.to_str().unwrap()).unwrap();
        assert_eq!(p.image_seals().unwrap(), IMAGE_SEALS);
        let expected: [u8; 32] = verifier_lib::crypto::HashAlg::Sha256
            .digest(b"#!/bin/sh\necho one\n")
            .try_into()
            .unwrap();
        assert_eq!(p.digest, expected);
        // Writing to the image is impossible, even for us.
        let image = File::from(p.image().try_clone_to_owned().unwrap());
        assert!(image.write_at(b"x", 0).is_err());
    }
}
