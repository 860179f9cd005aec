//! A throw-away PostgreSQL server for tests, from the distribution's
//! packages (`initdb`, `pg_ctl`, `createdb`; Debian: `postgresql-15`).
//!
//! [`database`] hands each test a fresh database on a server shared by the
//! tests of one process: the server is created on first use (`initdb` into
//! a temporary directory, `pg_ctl start` on a free port of 127.0.0.1, no
//! Unix socket, trust authentication for the loopback only) and stopped and
//! removed when the last [`PgDatabase`] of it is dropped. PostgreSQL refuses
//! to run as root, so a process running as root runs the server as the
//! unprivileged system user [`SERVER_USER`] (created with `useradd` when
//! missing) and hands it the directory. Servers left behind by a killed
//! test process are stopped and removed by the next one (see
//! [`sweep_stale_servers`]).

mod backend;

pub use backend::{Backend, TestStorage};

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The user the server runs as when the tests run as root.
pub const SERVER_USER: &str = "writ-test";
/// The superuser `initdb` creates; tests connect as it.
const SUPERUSER: &str = "writ";
/// Temporary directories of servers: `writ-pg-<owner pid>-<random>`.
const DIR_PREFIX: &str = "writ-pg-";
/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a server or database could not be provided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgHarnessError {
    #[error("PostgreSQL server programs not found (install postgresql-15): looked for {program} in {searched:?}")]
    NotInstalled {
        program: &'static str,
        searched: Vec<PathBuf>,
    },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("{step} failed ({status}): {output}")]
    Failed {
        step: &'static str,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("server on port {port} not ready after {waited:?}; log: {log}")]
    NotReady {
        port: u16,
        waited: Duration,
        log: String,
    },
}

/// One running server in a temporary directory.
#[derive(Debug)]
struct PgServer {
    bindir: PathBuf,
    /// Holds `data/` (the cluster) and `server.log`.
    dir: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
}

impl PgServer {
    fn start() -> Result<PgServer, PgHarnessError> {
        sweep_stale_servers();
        let bindir = bindir()?;
        let run_as = if running_as_root() {
            ensure_server_user()?;
            Some(SERVER_USER)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|source| PgHarnessError::Io {
                step: "create server dir",
                source,
            })?
            // Removed by Drop, or by the sweep of a later process when this
            // one was killed.
            .keep();
        let mut server = PgServer {
            bindir,
            dir,
            port: 0,
            run_as,
        };
        if let Some(user) = run_as {
            run(
                "chown server dir",
                Command::new("chown").arg(user).arg(&server.dir),
            )?;
        }
        let data = server.data_dir();
        let mut initdb = server.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg("--no-sync");
        run("initdb", &mut initdb)?;
        // A port that was free a moment ago can be taken before the server
        // binds it: try a few.
        let mut last = None;
        for _ in 0..3 {
            server.port = free_port()?;
            server.write_config()?;
            match server.pg_ctl_start() {
                Ok(()) => return server.wait_ready().map(|()| server),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => server.wait_ready().map(|()| server),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server program, run as the server user when the tests are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    fn write_config(&self) -> Result<(), PgHarnessError> {
        // Later settings win: appended on every (re)try.
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
             max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            self.port
        );
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(|source| PgHarnessError::Io {
            step: "read postgresql.conf",
            source,
        })?;
        text.push_str(&settings);
        fs::write(&conf, text).map_err(|source| PgHarnessError::Io {
            step: "write postgresql.conf",
            source,
        })
    }

    fn pg_ctl_start(&self) -> Result<(), PgHarnessError> {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "30", "start"]);
        run("pg_ctl start", &mut start).map(drop)
    }

    /// Connectable: `pg_isready` over TCP, polled.
    fn wait_ready(&self) -> Result<(), PgHarnessError> {
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bindir.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-U", SUPERUSER, "-d", "postgres", "-p"])
                .arg(self.port.to_string())
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(PgHarnessError::NotReady {
                    port: self.port,
                    waited: started.elapsed(),
                    log: fs::read_to_string(self.dir.join("server.log")).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn create_database(&self, name: &str) -> Result<(), PgHarnessError> {
        let mut create = Command::new(self.bindir.join("createdb"));
        create
            .args(["-h", "127.0.0.1", "-U", SUPERUSER, "-p"])
            .arg(self.port.to_string())
            .arg(name)
            .stdin(Stdio::null());
        run("createdb", &mut create).map(drop)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        stop_server(&self.bindir, &self.dir, self.run_as);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A fresh, empty database on a running throw-away server; the server
/// lives while any of its databases does.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    server: Arc<PgServer>,
    name: String,
}

impl PgDatabase {
    /// `postgres://writ@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.server.port, self.name
        )
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Another fresh database on the same server (several brokers' or a
    /// restarted broker's tests keep theirs apart).
    pub fn sibling(&self) -> Result<PgDatabase, PgHarnessError> {
        new_database(Arc::clone(&self.server))
    }
}

/// The server the databases of this process share, while any is alive.
static SERVER: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh database for one test, on this process's throw-away server
/// (started on first use, stopped and removed with its last database).
pub fn database() -> Result<PgDatabase, PgHarnessError> {
    let server = {
        let mut shared = SERVER.lock().unwrap_or_else(|p| p.into_inner());
        match shared.upgrade() {
            Some(s) => s,
            None => {
                let s = Arc::new(PgServer::start()?);
                *shared = Arc::downgrade(&s);
                s
            }
        }
    };
    new_database(server)
}

fn new_database(server: Arc<PgServer>) -> Result<PgDatabase, PgHarnessError> {
    let name = format!(
        "writ_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    server.create_database(&name)?;
    Ok(PgDatabase { server, name })
}

/// Stop and remove servers whose owning test process is gone (killed
/// before its servers were dropped). Called before every server start.
pub fn sweep_stale_servers() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let Ok(bindir) = bindir() else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let path = entry.path();
        let run_as = running_as_root().then_some(SERVER_USER);
        stop_server(&bindir, &path, run_as);
        let _ = fs::remove_dir_all(&path);
    }
}

/// `pg_ctl stop -m immediate` when the directory holds a running server.
fn stop_server(bindir: &Path, dir: &Path, run_as: Option<&str>) {
    let data = dir.join("data");
    if !data.join("postmaster.pid").exists() {
        return;
    }
    let program = bindir.join("pg_ctl");
    let mut stop = match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let _ = stop
        .arg("-D")
        .arg(&data)
        .args(["-m", "immediate", "-w", "stop"])
        .stdin(Stdio::null())
        .output();
}

/// The directory of the server programs: `pg_config --bindir` when it has
/// `initdb`, else the newest `/usr/lib/postgresql/*/bin` (Debian).
fn bindir() -> Result<PathBuf, PgHarnessError> {
    let mut searched = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Ok(dir);
            }
            searched.push(dir);
        }
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) if dir.join("initdb").exists() => Ok(dir),
        _ => {
            searched.push(root.to_owned());
            Err(PgHarnessError::NotInstalled {
                program: "initdb",
                searched,
            })
        }
    }
}

fn running_as_root() -> bool {
    // The effective uid, from the kernel's view of this process.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Create the unprivileged server user unless it exists.
fn ensure_server_user() -> Result<(), PgHarnessError> {
    let exists = || {
        Command::new("id")
            .args(["-u", SERVER_USER])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if exists() {
        return Ok(());
    }
    let mut add = Command::new("useradd");
    add.args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
    ])
    .arg(SERVER_USER);
    match run("useradd", &mut add) {
        // Another test process may have created it meanwhile.
        Err(_) if exists() => Ok(()),
        other => other.map(drop),
    }
}

fn free_port() -> Result<u16, PgHarnessError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| PgHarnessError::Io {
            step: "find a free port",
            source,
        })
}

fn run(step: &'static str, cmd: &mut Command) -> Result<Output, PgHarnessError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PgHarnessError::Io { step, source })?;
    if out.status.success() {
        Ok(out)
    } else {
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(PgHarnessError::Failed {
            step,
            status: out.status,
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_share_a_server_that_goes_with_the_last() {
        let a = database().unwrap();
        let b = database().unwrap();
        assert_ne!(a.name(), b.name());
        assert_eq!(a.server.port, b.server.port);
        let dir = a.server.dir.clone();
        assert!(dir.join("data/postmaster.pid").exists());
        let ready = Command::new(bindir().unwrap().join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p"])
            .arg(a.server.port.to_string())
            .output()
            .unwrap();
        assert!(ready.status.success());
        drop(a);
        assert!(dir.exists());
        drop(b);
        assert!(!dir.exists(), "server dir removed with the last database");
    }
}
