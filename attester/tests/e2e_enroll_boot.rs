//! The boot unit's command, `writ-attester enroll --if-needed` (the real
//! binary against swtpm and a real broker): idempotent, exit 75 while no
//! broker answers (the unit restarts on it), exit 1 with the broker's
//! reason when the enrollment is refused (the unit fails visibly).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{broker_for, fresh_pcrs, stderr, Host};
use writ_attester::state::STATE_FILE;

fn stdout_json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {}", stderr(o)))
}

#[test]
fn enroll_if_needed_enrolls_once_then_changes_nothing() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::new(&broker.url());

    let first = host.attester(&["enroll", "--if-needed"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let first = stdout_json(&first);
    assert_eq!(first["status"], "enrolled");
    let state_path = host.state_dir.path().join(STATE_FILE);
    let state = std::fs::read(&state_path).unwrap();

    let second = host.attester(&["enroll", "--if-needed"], &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    let second = stdout_json(&second);
    assert_eq!(second["status"], "already_enrolled");
    assert_eq!(second["host_id"], first["host_id"]);
    // Nothing was re-created: same AK, same file.
    assert_eq!(std::fs::read(&state_path).unwrap(), state);
    assert_eq!(
        broker.block_on(broker.store.counts()).unwrap().hosts,
        1,
        "one host on the broker"
    );
    // The enrollment is usable.
    let attest = host.attester(&["attest"], &[]);
    assert!(attest.status.success(), "{}", stderr(&attest));

    // Without --if-needed, enroll means enroll again (a new AK).
    let again = host.attester(&["enroll"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout_json(&again)["status"], "enrolled");
    assert_ne!(std::fs::read(&state_path).unwrap(), state);
}

#[test]
fn enroll_if_needed_exits_75_while_no_broker_answers() {
    // A loopback port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = Host::new(&format!("http://127.0.0.1:{port}"));
    let out = host.attester(
        &[
            "--retry-budget-ms",
            "300",
            "--retry-backoff-ms",
            "50",
            "enroll",
            "--if-needed",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("enroll failed: all 1 broker(s) failed"),
        "{}",
        stderr(&out)
    );
    assert!(!host.state_dir.path().join(STATE_FILE).exists());
}

#[test]
fn refused_enrollment_exits_1_with_the_reason() {
    let (pcrs, _roots) = fresh_pcrs();
    // The broker trusts no EK root: this swtpm's EK chain is refused.
    let broker = broker_for(&pcrs, &[], Vec::new());
    let host = Host::new(&broker.url());
    let out = host.attester(&["enroll", "--if-needed"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("enroll failed: ek_cert_untrusted"),
        "{}",
        stderr(&out)
    );
    assert!(!host.state_dir.path().join(STATE_FILE).exists());
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().hosts, 0);
}

#[test]
fn an_unreadable_state_file_is_an_error_not_a_new_enrollment() {
    use std::os::unix::fs::PermissionsExt;
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::new(&broker.url());
    let out = host.attester(&["enroll", "--if-needed"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state_path = host.state_dir.path().join(STATE_FILE);
    std::fs::set_permissions(&state_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = host.attester(&["enroll", "--if-needed"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("state file"), "{}", stderr(&out));
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().hosts, 1);
}
