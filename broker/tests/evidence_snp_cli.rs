//! `writ-broker evidence snp` on the real SEV-SNP vectors: genuine → 0,
//! tampered → 1, garbage → 2; no CRL and no `--dangerous-skip-crl` → 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../verifier-lib/tests/vectors/sevsnp")
}

fn run(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .arg("evidence")
        .arg("snp")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text} / {:?}", out.stderr));
    (out.status.code().unwrap(), v)
}

fn p(rel: &str) -> String {
    vectors().join(rel).display().to_string()
}

const AT: &str = "2024-06-01T00:00:00Z";

fn expected(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(vectors().join(rel)).unwrap()).unwrap()
}

#[test]
fn genuine_report_is_valid_with_explicit_crl_skip() {
    let dir = "trustee/milan-v2-guestsvn4";
    let (code, v) = run(&[
        "--report",
        &p(&format!("{dir}/report.bin")),
        "--vcek",
        &p(&format!("{dir}/vcek.der")),
        "--chain",
        &p(&format!("{dir}/ask_ark_milan.pem")),
        "--dangerous-skip-crl",
        "--at",
        AT,
    ]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["input"]["revocation"], "dangerous-skip");
    assert_eq!(v["verified"]["revocation_checked"], false);
    assert_eq!(v["verified"]["product"], "Milan");
    let e = expected(&format!("{dir}/expected.json"));
    assert_eq!(v["verified"]["measurement"], e["parsed"]["measurement"]);
    assert_eq!(v["verified"]["chip_id"], e["parsed"]["chip_id"]);
    assert_eq!(v["report"]["guest_svn"], 4);
}

#[test]
fn without_crl_the_verdict_is_crl_unavailable() {
    let dir = "trustee/milan-v2-guestsvn4";
    let (code, v) = run(&[
        "--report",
        &p(&format!("{dir}/report.bin")),
        "--vcek",
        &p(&format!("{dir}/vcek.der")),
        "--at",
        AT,
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["reason"]["kind"], "CrlUnavailable");
    assert_eq!(v["input"]["intermediate"], "bundled");
}

#[test]
fn tampered_report_and_wrong_nonce_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let src = "go-sev-guest/milan-v2";
    let mut report = std::fs::read(vectors().join(src).join("report.bin")).unwrap();
    report[0x90] ^= 1; // measurement
    let tampered = dir.path().join("tampered.bin");
    std::fs::write(&tampered, &report).unwrap();
    let common = |report: &str| {
        vec![
            "--report".to_owned(),
            report.to_owned(),
            "--vcek".into(),
            p(&format!("{src}/vcek.der")),
            "--chain".into(),
            p(&format!("{src}/ask_ark.pem")),
            "--dangerous-skip-crl".into(),
            "--at".into(),
            AT.into(),
        ]
    };
    let args = common(&tampered.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, v) = run(&args);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"]["kind"], "ReportSignatureInvalid");

    let mut args = common(&p(&format!("{src}/report.bin")));
    args.extend(["--nonce".into(), "00112233".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, v) = run(&args);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"]["kind"], "ReportDataMismatch");
    assert_eq!(v["input"]["report_data_checked"], true);
}

#[test]
fn garbage_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"definitely not an SEV-SNP report").unwrap();
    let vcek = p("go-sev-guest/milan-v2/vcek.der");
    let (code, v) = run(&["--report", &garbage.display().to_string(), "--vcek", &vcek]);
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["verdict"], "unusable");
    assert_eq!(v["reason"]["kind"], "InvalidLength");
    // A garbage CRL (neither DER nor PEM) is unusable too, and so is a missing file.
    let (code, v) = run(&[
        "--report",
        &p("go-sev-guest/milan-v2/report.bin"),
        "--vcek",
        &vcek,
        "--crl",
        &garbage.display().to_string(),
    ]);
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["reason"]["stage"], "crl");
    assert_eq!(v["reason"]["kind"], "NotPem");
    let (code, _) = run(&["--report", "/nonexistent/report.bin", "--vcek", &vcek]);
    assert_eq!(code, 2);
}

#[test]
fn azure_hcl_report_is_detected_and_verified() {
    let dir = "trustee-azure/milan-hcl";
    let chain = p(&format!("{dir}/vcek_chain.pem"));
    let (code, v) = run(&[
        "--report",
        &p(&format!("{dir}/hcl-report.bin")),
        "--vcek",
        &chain,
        "--chain",
        &chain,
        "--dangerous-skip-crl",
        "--at",
        AT,
    ]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["input"]["format"], "azure-hcl");
    assert_eq!(v["input"]["intermediate"], "given");
    assert!(v["input"]["hcl_runtime_json"]
        .as_str()
        .unwrap()
        .contains("HCLAkPub"));
    let e = expected(&format!("{dir}/expected.json"));
    assert_eq!(v["verified"]["measurement"], e["parsed"]["measurement"]);
}
