//! A workload socket served by another unprivileged user is not the attester
//! daemon: the client refuses it (typed) before sending anything, so a
//! socket planted at the daemon's path cannot hand out tokens or collect a
//! launcher's program image. Runs as root (as the test suite does) to start
//! the impostor as `nobody`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use writ_workload::{request, WorkloadApiError, WorkloadRequest};

/// Accepts one connection, records whether anything was sent, answers
/// with a token-shaped object.
const IMPOSTOR: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(1)
c, _ = s.accept()
c.settimeout(2)
try:
    got = c.recv(4096)
except OSError:
    got = b""
open(sys.argv[2], "w").write("sent" if got else "nothing")
"#;

#[test]
fn a_socket_served_by_another_user_is_refused() {
    assert!(
        rustix::process::getuid().is_root(),
        "this test starts a socket server as nobody: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("attester.sock");
    let record = dir.path().join("record");
    let mut impostor = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
        ])
        .arg(IMPOSTOR)
        .arg(&socket)
        .arg(&record)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&socket);
    let e = request(
        &socket,
        &WorkloadRequest::Token {
            cnf: None,
            workload: None,
        },
        Duration::from_secs(5),
    )
    .unwrap_err();
    match e {
        WorkloadApiError::UntrustedDaemon { actual, .. } => assert_eq!(actual, 65534),
        other => panic!("expected UntrustedDaemon, got {other:?}"),
    }
    assert!(impostor.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "nothing");
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "impostor never bound {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
