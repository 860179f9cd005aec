//! Regression: `writ-broker policy show | head` (and the other policy and
//! audit commands) with a reader that went away ended in a panic and a
//! backtrace (println! on EPIPE). They now stop writing quietly and keep their exit status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

/// Run writ-broker with stdout on a pipe nobody reads (EPIPE on the first
/// write, as `... | head` after head exited).
fn closed(args: &[&str]) -> Output {
    // A pipe whose only reader has exited: `true` reads nothing and ends;
    // its stdin's write end stays with us (std::io::pipe needs Rust 1.87,
    // above the MSRV).
    let mut sink = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer = sink.stdin.take().unwrap();
    assert!(sink.wait().unwrap().success());
    Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(args)
        .env_remove("WRIT_POLICY__SIGNING_KEYS")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn policy_and_audit_commands_end_quietly_on_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("writ.db").display());
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        format!(
            "id = \"pipe\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n[groups.pcrs]\n0 = [\"{}\"]\n",
            "00".repeat(32)
        ),
    )
    .unwrap();
    let activated = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(["policy", "activate", file.to_str().unwrap(), "--db", &db])
        .env_remove("WRIT_POLICY__SIGNING_KEYS")
        .output()
        .unwrap();
    assert!(activated.status.success(), "{activated:?}");
    for args in [
        vec!["policy", "show", "--db", &db],
        vec!["policy", "history", "--db", &db],
        vec!["policy", "history", "--json", "--db", &db],
        vec!["policy", "diff-report", "--db", &db],
    ] {
        let out = closed(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
    // An audit command: the same exit status as with a reader.
    let db_file = dir.path().join("writ.db");
    let args = ["audit", "verify", "--db", db_file.to_str().unwrap()];
    let read = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(args)
        .output()
        .unwrap();
    assert!(!read.stdout.is_empty());
    let out = closed(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), read.status.code(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
