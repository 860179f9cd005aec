//! swtpm harness: each test gets its own software TPM.
//!
//! `swtpm_setup` runs once per test process ([`template`]) and provisions an
//! EK (RSA 2048 and ECC P-384) with certificates signed by a throwaway local
//! CA. Every [`Swtpm`] then copies that state into its own directory and runs
//! its own `swtpm socket` child process on its own loopback ports, so tests
//! can run in parallel: swtpm has no resource manager and accepts exactly one
//! client at a time.
#![forbid(unsafe_code)]

pub mod broker;

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

/// Prefix of the per-process template directory in the temp dir.
const TEMPLATE_PREFIX: &str = "writ-swtpm-tmpl-";
/// Prefix of a per-instance state directory in the temp dir.
const INSTANCE_PREFIX: &str = "writ-swtpm-inst-";
/// Name of the libtpms state file swtpm keeps in its state directory.
const STATE_FILE: &str = "tpm2-00.permall";
/// How long to wait for a freshly spawned swtpm to accept connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for swtpm to exit after a clean shutdown request.
const EXIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts at finding free ports and spawning swtpm on them.
const SPAWN_ATTEMPTS: usize = 5;

/// Errors of the swtpm harness; each names the operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A setup command could not be run at all.
    #[error("swtpm setup step `{step}` could not be run")]
    Setup {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// A setup command ran and failed.
    #[error("swtpm setup step `{step}` failed with {status}: {stderr}")]
    SetupFailed {
        step: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    /// Template creation failed earlier in this process.
    #[error("the swtpm template could not be created")]
    Template {
        #[source]
        source: Arc<HarnessError>,
    },
    /// Copying the template state into an instance directory failed.
    #[error("copying the swtpm state from {from} to {to}")]
    CopyState {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No free loopback port could be found.
    #[error("finding a free loopback port")]
    FreePort {
        #[source]
        source: io::Error,
    },
    /// The `swtpm socket` child could not be spawned.
    #[error("spawning `swtpm socket`")]
    Spawn {
        #[source]
        source: io::Error,
    },
    /// swtpm exited before it accepted connections.
    #[error("swtpm exited early with {status}: {stderr}")]
    Exited { status: ExitStatus, stderr: String },
    /// swtpm did not accept connections in time.
    #[error("swtpm did not listen on port {port} within {waited_ms} ms")]
    NotListening { port: u16, waited_ms: u128 },
    /// Waiting for or killing the swtpm child failed.
    #[error("stopping swtpm (pid {pid})")]
    Stop {
        pid: u32,
        #[source]
        source: io::Error,
    },
    /// Reading a file of the local CA failed.
    #[error("reading the swtpm local CA file {path}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The provisioned state every [`Swtpm`] starts from, plus the local CA that
/// signed its EK certificates. Created once per test process.
#[derive(Debug)]
pub struct SwtpmTemplate {
    dir: PathBuf,
    state_file: PathBuf,
    ca_dir: PathBuf,
}

impl SwtpmTemplate {
    /// Directory holding the local CA (`$XDG_CONFIG_HOME/var/lib/swtpm-localca`).
    pub fn ca_dir(&self) -> &Path {
        &self.ca_dir
    }

    /// Path of the local CA's self-signed root certificate (PEM).
    pub fn ca_root_pem(&self) -> PathBuf {
        self.ca_dir.join("swtpm-localca-rootca-cert.pem")
    }

    /// Path of the intermediate that signs the EK certificates (PEM).
    pub fn ca_issuer_pem(&self) -> PathBuf {
        self.ca_dir.join("issuercert.pem")
    }

    /// Contents of [`Self::ca_root_pem`].
    pub fn ca_root_pem_bytes(&self) -> Result<Vec<u8>, HarnessError> {
        read_ca(self.ca_root_pem())
    }

    /// Contents of [`Self::ca_issuer_pem`].
    pub fn ca_issuer_pem_bytes(&self) -> Result<Vec<u8>, HarnessError> {
        read_ca(self.ca_issuer_pem())
    }

    /// Directory of the provisioned template state (never run directly).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn create() -> Result<SwtpmTemplate, HarnessError> {
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{TEMPLATE_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|source| HarnessError::Setup {
                step: "create template dir",
                source,
            })?
            // Kept for the life of the process; removed by the sweep of a
            // later test process once this one has exited.
            .keep();
        let xdg = dir.join("xdg");
        let state = dir.join("template");
        for d in [&xdg, &state] {
            fs::create_dir_all(d).map_err(|source| HarnessError::Setup {
                step: "create template dir",
                source,
            })?;
        }
        let mut config = Command::new("swtpm_setup");
        config.arg("--create-config-files");
        if running_as_root() {
            config.arg("root");
        }
        run_setup(
            "swtpm_setup --create-config-files",
            config.env("XDG_CONFIG_HOME", &xdg),
        )?;
        let mut setup = Command::new("swtpm_setup");
        setup
            .args(["--tpm2", "--tpmstate"])
            .arg(&state)
            .args(["--create-ek-cert", "--create-platform-cert", "--overwrite"])
            .env("XDG_CONFIG_HOME", &xdg);
        run_setup("swtpm_setup --tpm2", &mut setup)?;
        Ok(SwtpmTemplate {
            state_file: state.join(STATE_FILE),
            ca_dir: xdg.join("var/lib/swtpm-localca"),
            dir,
        })
    }
}

fn read_ca(path: PathBuf) -> Result<Vec<u8>, HarnessError> {
    fs::read(&path).map_err(|source| HarnessError::ReadCa { path, source })
}

fn run_setup(step: &'static str, cmd: &mut Command) -> Result<(), HarnessError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Setup { step, source })?;
    if out.status.success() {
        Ok(())
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(HarnessError::SetupFailed {
            step,
            status: out.status,
            stderr,
        })
    }
}

/// Whether this process runs as uid 0 (swtpm_setup then wants `root`).
fn running_as_root() -> bool {
    let from_proc = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1).map(|euid| euid == "0"))
    });
    match from_proc {
        Some(root) => root,
        None => Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false),
    }
}

/// Remove template and instance directories left by test processes that no
/// longer exist (killed runs), stopping any swtpm still running from them.
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix(TEMPLATE_PREFIX)
            .or_else(|| name.strip_prefix(INSTANCE_PREFIX))
        else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let path = entry.path();
        stop_orphan(&path.join("swtpm.pid"), &path);
        let _ = fs::remove_dir_all(&path);
    }
}

/// Stop an orphaned swtpm whose pid file lies in `dir`, only if that pid is
/// still a swtpm serving this very directory.
fn stop_orphan(pid_file: &Path, dir: &Path) {
    let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    if cmdline.contains("swtpm") && cmdline.contains(&*dir.to_string_lossy()) {
        let _ = Command::new("kill")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

static TEMPLATE: OnceLock<Result<SwtpmTemplate, Arc<HarnessError>>> = OnceLock::new();
static WARNING: Once = Once::new();

/// The process-wide template, created on first use.
pub fn template() -> Result<&'static SwtpmTemplate, HarnessError> {
    WARNING.call_once(|| {
        eprintln!(
            "\n*** WARNING: tests are using a SOFTWARE TPM (swtpm). Its keys and \
             certificates prove nothing about hardware. ***\n"
        );
    });
    match TEMPLATE.get_or_init(|| SwtpmTemplate::create().map_err(Arc::new)) {
        Ok(t) => Ok(t),
        Err(e) => Err(HarnessError::Template { source: e.clone() }),
    }
}

/// One running swtpm with its own state and ports. Dropping it shuts the
/// TPM down and removes its state.
#[derive(Debug)]
pub struct Swtpm {
    /// TPM command port (what a TCTI connects to).
    pub port: u16,
    /// swtpm control-channel port.
    pub ctrl_port: u16,
    /// This instance's state directory.
    pub state_dir: PathBuf,
    child: Option<Child>,
    template: &'static SwtpmTemplate,
    _dir: tempfile::TempDir,
}

impl Swtpm {
    /// Copy the template state and start a fresh swtpm on free ports.
    pub fn start() -> Result<Swtpm, HarnessError> {
        let template = template()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{INSTANCE_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|source| HarnessError::Setup {
                step: "create instance dir",
                source,
            })?;
        let state_dir = dir.path().to_path_buf();
        let to = state_dir.join(STATE_FILE);
        fs::copy(&template.state_file, &to).map_err(|source| HarnessError::CopyState {
            from: template.state_file.clone(),
            to,
            source,
        })?;
        let mut swtpm = Swtpm {
            port: 0,
            ctrl_port: 0,
            state_dir,
            child: None,
            template,
            _dir: dir,
        };
        swtpm.spawn()?;
        Ok(swtpm)
    }

    /// Start a swtpm that is a *different* TPM from every other instance:
    /// freshly manufactured by `swtpm_setup` (new seeds, so a new EK and EK
    /// certificate) by the same local CA. [`Swtpm::start`] copies one
    /// template, so all its instances share one EK — fine for one host per
    /// test, wrong for tests that need two hosts (≈0.6 s slower).
    pub fn start_distinct() -> Result<Swtpm, HarnessError> {
        let template = template()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{INSTANCE_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|source| HarnessError::Setup {
                step: "create instance dir",
                source,
            })?;
        let state_dir = dir.path().to_path_buf();
        let mut setup = Command::new("swtpm_setup");
        setup
            .args(["--tpm2", "--tpmstate"])
            .arg(&state_dir)
            .args(["--create-ek-cert", "--create-platform-cert", "--overwrite"])
            .env("XDG_CONFIG_HOME", template.dir.join("xdg"));
        run_setup("swtpm_setup --tpm2 (distinct)", &mut setup)?;
        let mut swtpm = Swtpm {
            port: 0,
            ctrl_port: 0,
            state_dir,
            child: None,
            template,
            _dir: dir,
        };
        swtpm.spawn()?;
        Ok(swtpm)
    }

    /// TCTI configuration string for tss-esapi / tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The template (and its local CA) this instance was copied from.
    pub fn template(&self) -> &'static SwtpmTemplate {
        self.template
    }

    /// Root and issuer certificates (PEM, concatenated) of the CA that
    /// signed this TPM's EK certificates, for a verifier's trust store.
    pub fn ca_roots_pem(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for path in [self.template.ca_root_pem(), self.template.ca_issuer_pem()] {
            if let Ok(bytes) = fs::read(path) {
                out.extend_from_slice(&bytes);
                if !out.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
        }
        out
    }

    /// Reboot: shut swtpm down cleanly and start it again on the same state.
    /// The TPM's resetCount increments. Clients must reconnect afterwards
    /// (drop them before calling this: swtpm serves one client at a time).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let mut last = None;
        // Try the previous ports first on restart, then fresh ones.
        let mut ports = (self.port != 0).then_some((self.port, self.ctrl_port));
        for _ in 0..SPAWN_ATTEMPTS {
            let (port, ctrl) = match ports.take() {
                Some(p) => p,
                None => free_port_pair()?,
            };
            match self.spawn_on(port, ctrl) {
                Ok(()) => return Ok(()),
                // A port taken between our probe and swtpm's bind: retry.
                Err(e @ (HarnessError::Exited { .. } | HarnessError::NotListening { .. })) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(HarnessError::NotListening {
            port: 0,
            waited_ms: 0,
        }))
    }

    fn spawn_on(&mut self, port: u16, ctrl: u16) -> Result<(), HarnessError> {
        let stderr_path = self.state_dir.join("swtpm.stderr");
        let pid_path = self.state_dir.join("swtpm.pid");
        let _ = fs::remove_file(&pid_path);
        let stderr =
            fs::File::create(&stderr_path).map_err(|source| HarnessError::Spawn { source })?;
        let dir_arg = |prefix: &str, p: &Path| {
            let mut s = std::ffi::OsString::from(prefix);
            s.push(p.as_os_str());
            s
        };
        let mut child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--server"])
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
            .arg("--tpmstate")
            .arg(dir_arg("dir=", &self.state_dir))
            .args(["--flags", "not-need-init,startup-clear", "--pid"])
            .arg(dir_arg("file=", &pid_path))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| HarnessError::Spawn { source })?;
        let started = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(HarnessError::Exited { status, stderr });
            }
            // Ready once *our* child wrote its pid file and the port
            // answers (a foreign listener on a raced port would answer too,
            // but then our child exits on its failed bind, caught above or
            // by the liveness check below).
            let pid_written =
                fs::read_to_string(&pid_path).is_ok_and(|p| p.trim() == child.id().to_string());
            if pid_written && TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(2));
                if let Ok(Some(status)) = child.try_wait() {
                    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
                    return Err(HarnessError::Exited { status, stderr });
                }
                break;
            }
            if started.elapsed() > LISTEN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::NotListening {
                    port,
                    waited_ms: started.elapsed().as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.port = port;
        self.ctrl_port = ctrl;
        self.child = Some(child);
        Ok(())
    }

    /// The TPM disappears: SIGKILL, no shutdown (what a host sees when its
    /// TPM device or the vTPM behind it goes away).
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        child
            .kill()
            .map_err(|source| HarnessError::Stop { pid, source })?;
        child
            .wait()
            .map(|_| ())
            .map_err(|source| HarnessError::Stop { pid, source })
    }

    /// Clean shutdown through the control channel, then make sure the child
    /// is gone.
    fn stop(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("swtpm_ioctl")
            .arg("--tcp")
            .arg(format!("127.0.0.1:{}", self.ctrl_port))
            .arg("-s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let pid = child.id();
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => break,
                Err(source) => return Err(HarnessError::Stop { pid, source }),
            }
        }
        child
            .kill()
            .map_err(|source| HarnessError::Stop { pid, source })?;
        child
            .wait()
            .map(|_| ())
            .map_err(|source| HarnessError::Stop { pid, source })
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("swtpm harness: {e}");
        }
    }
}

/// Two consecutive loopback ports `(P, P+1)` that were free a moment ago.
///
/// They must be consecutive: the tss2 `swtpm` TCTI takes only `port=P` and
/// talks to the control channel on `P+1` (it sets the locality there).
fn free_port_pair() -> Result<(u16, u16), HarnessError> {
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no consecutive free ports");
    for _ in 0..64 {
        let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|source| HarnessError::FreePort { source })?;
        let port = first
            .local_addr()
            .map_err(|source| HarnessError::FreePort { source })?
            .port();
        let Some(ctrl) = port.checked_add(1) else {
            continue;
        };
        match TcpListener::bind((Ipv4Addr::LOCALHOST, ctrl)) {
            Ok(_second) => return Ok((port, ctrl)),
            Err(e) => last = e,
        }
    }
    Err(HarnessError::FreePort { source: last })
}

/// Run a tpm2-tools style command against this instance (`-T <tcti>` is
/// appended); convenience for tests that use tpm2-tools as a peer.
pub fn tpm2_tool<I, S>(swtpm: &Swtpm, tool: &str, args: I) -> io::Result<std::process::Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(tool)
        .args(args)
        .arg("-T")
        .arg(swtpm.tcti())
        .stdin(Stdio::null())
        .output()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn random_bytes(swtpm: &Swtpm) -> Vec<u8> {
        let out = tpm2_tool(swtpm, "tpm2_getrandom", ["8"]).unwrap();
        assert!(
            out.status.success(),
            "tpm2_getrandom: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn ten_instances_in_parallel_start_answer_and_stop() {
        let threads: Vec<_> = (0..10)
            .map(|_| {
                std::thread::spawn(|| {
                    let swtpm = Swtpm::start().unwrap();
                    assert_eq!(random_bytes(&swtpm).len(), 8);
                    (swtpm.port, swtpm.ctrl_port)
                })
            })
            .collect();
        let mut ports: Vec<u16> = threads
            .into_iter()
            .flat_map(|t| {
                let (p, c) = t.join().unwrap();
                [p, c]
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 20, "every instance had its own two ports");
    }

    #[test]
    fn restart_keeps_state_and_serves_again() {
        let mut swtpm = Swtpm::start().unwrap();
        assert_eq!(random_bytes(&swtpm).len(), 8);
        let state = swtpm.state_dir.join(STATE_FILE);
        swtpm.restart().unwrap();
        assert!(state.exists());
        assert_eq!(random_bytes(&swtpm).len(), 8);
    }

    #[test]
    fn drop_stops_the_child_and_removes_state() {
        let swtpm = Swtpm::start().unwrap();
        let dir = swtpm.state_dir.clone();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, swtpm.port));
        drop(swtpm);
        assert!(!dir.exists());
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }

    #[test]
    fn ca_files_are_pem_certificates() {
        let swtpm = Swtpm::start().unwrap();
        let roots = String::from_utf8(swtpm.ca_roots_pem()).unwrap();
        assert_eq!(roots.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        let t = swtpm.template();
        assert!(t
            .ca_root_pem_bytes()
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert!(t
            .ca_issuer_pem_bytes()
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE-----"));
    }
}
