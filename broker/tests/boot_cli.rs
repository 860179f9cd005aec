//! `writ-broker policy learn` and `writ-broker evidence eventlog|ima` on the
//! vector logs: exit codes and the learned draft.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn vector(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../verifier-lib/tests/vectors")
        .join(rel)
        .display()
        .to_string()
}

fn broker(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn evidence_eventlog_exit_codes() {
    let log = vector("eventlog/go-tpm-tools/rhel8-uefi/binary_bios_measurements");
    let pcrs = vector("eventlog/go-tpm-tools/rhel8-uefi/expected_pcrs.json");
    let (code, out) = broker(&["evidence", "eventlog", &log, "--pcrs", &pcrs]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["claims"]["secure_boot"], true);
    // Another log's PCRs: mismatch, exit 1.
    let other = vector("eventlog/go-tpm-tools/cos-101-amd-sev/expected_pcrs.json");
    let (code, out) = broker(&["evidence", "eventlog", &log, "--pcrs", &other]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("mismatches"));
    // Not a log: exit 2.
    let (code, _) = broker(&["evidence", "eventlog", &other]);
    assert_eq!(code, 2);
}

#[test]
fn evidence_ima_exit_codes() {
    let list = vector("ima/keylime/ima-log-sha256/ascii_runtime_measurements");
    let (code, out) = broker(&["evidence", "ima", &list]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sha1 = v["pcr10"]["sha1"].as_str().unwrap().to_owned();
    let (code, _) = broker(&["evidence", "ima", &list, "--pcr10", &sha1]);
    assert_eq!(code, 0);
    let (code, _) = broker(&["evidence", "ima", &list, "--pcr10", &"00".repeat(32)]);
    assert_eq!(code, 1);
    let not_ima = vector("eventlog/go-attestation/crypto_agile_eventlog/binary_bios_measurements");
    let (code, _) = broker(&["evidence", "ima", &not_ima]);
    assert_eq!(code, 2);
}

#[test]
fn policy_learn_prints_a_parseable_draft() {
    let log = vector("eventlog/keylime/secureboot/binary_bios_measurements");
    let ima = vector("ima/keylime-sig/ascii_runtime_measurements");
    let (code, out) = broker(&[
        "policy",
        "learn",
        "--eventlog",
        &log,
        "--ima",
        &ima,
        "--id",
        "golden-1",
        "--group",
        "web",
        "--host",
        "h1",
    ]);
    assert_eq!(code, 0, "{out}");
    let p = verifier_lib::policy::Policy::parse_toml(&out).unwrap();
    assert_eq!(p.id, "golden-1");
    let g = &p.groups[0];
    assert_eq!(g.name, "web");
    assert_eq!(g.hosts, vec!["h1".to_owned()]);
    let boot = g.boot.as_ref().unwrap();
    assert_eq!(boot.secure_boot, Some(true));
    assert_eq!(boot.kernels.allowed.len(), 1);
    assert!(g.ima.as_ref().unwrap().allow.contains_key("/usr/bin/dd"));
    let (code, _) = broker(&["policy", "learn"]);
    assert_eq!(code, 2);
}
