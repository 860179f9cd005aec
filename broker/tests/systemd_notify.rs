//! `writ-broker serve` under a `Type=notify` unit: the real binary, started
//! the way systemd starts it (`NOTIFY_SOCKET`, `WATCHDOG_USEC`), sends
//! `READY=1` only once it answers on its port, pings the watchdog, and
//! sends `STOPPING=1` on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the broker on drop, also when an assertion fails.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::write(
        dir.join("policy.toml"),
        // Notifications are under test, not appraisal.
        "id = \"notify-test\"\n\n[[groups]]\nname = \"default\"\nhosts = [\"*\"]\n\
         dangerous_accept_any_measurements = true\n",
    )
    .unwrap();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nurl = \"sqlite://{db}\"\n\
         [keys]\ndir = \"{keys}\"\n[policy]\nfile = \"{policy}\"\n[trust]\nbundled_manufacturers = false\n",
        db = dir.join("writ.db").display(),
        keys = dir.join("keys").display(),
        policy = dir.join("policy.toml").display(),
    );
    let path = dir.join("broker.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// The next datagram, within `timeout`.
fn next_message(socket: &UnixDatagram, timeout: Duration, log: &Path) -> String {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 512];
    match socket.recv(&mut buf) {
        Ok(len) => String::from_utf8_lossy(&buf[..len]).into_owned(),
        Err(e) => panic!(
            "no notification within {timeout:?} ({e}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

#[test]
fn ready_after_listening_watchdog_pings_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(dir.path(), port);
    let notify_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    let log = dir.path().join("broker.log");
    let child = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        // 400 ms: a ping every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut broker = Broker(child);

    assert_eq!(
        next_message(&socket, Duration::from_secs(120), &log),
        "READY=1"
    );
    // Ready means serving: the first request after READY=1 is answered,
    // with no retry.
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    for _ in 0..3 {
        assert_eq!(
            next_message(&socket, Duration::from_secs(10), &log),
            "WATCHDOG=1"
        );
    }

    let pid = rustix::process::Pid::from_raw(i32::try_from(broker.0.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut rest = Vec::new();
    loop {
        let m = next_message(&socket, Duration::from_secs(30), &log);
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1", "unexpected notification; seen {rest:?}");
        rest.push(m);
    }
    let status = broker.0.wait().unwrap();
    assert!(status.success(), "broker exited with {status}");
}
