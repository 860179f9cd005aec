//! `writ-broker evidence quote|ekcert` on real vectors: genuine evidence is
//! valid (exit 0), tampered evidence invalid (exit 1), garbage unusable (exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../verifier-lib/tests/vectors")
}

fn broker(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), json)
}

/// Every swtpm-made quote vector (uniform layout: quote.attest.bin,
/// quote.sig.tpmt.bin, ak.pub/ak.pem, nonce and PCRs in vector.json).
fn swtpm_quotes() -> Vec<(PathBuf, String, serde_json::Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(vectors().join("quote/swtpm")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("vector.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        out.push((
            dir,
            v["nonce_hex"].as_str().unwrap().to_owned(),
            v["pcr_values_by_bank"].clone(),
        ));
    }
    assert!(out.len() >= 4, "expected the swtpm quote vectors");
    out
}

#[test]
fn genuine_quotes_are_valid_with_every_ak_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, nonce, pcrs) in swtpm_quotes() {
        let pcrs_path = tmp.path().join("pcrs.json");
        std::fs::write(&pcrs_path, pcrs.to_string()).unwrap();
        for ak in ["ak.pub", "ak.pem"] {
            let (code, json) = broker(&[
                "evidence",
                "quote",
                "--attest",
                dir.join("quote.attest.bin").to_str().unwrap(),
                "--signature",
                dir.join("quote.sig.tpmt.bin").to_str().unwrap(),
                "--ak",
                dir.join(ak).to_str().unwrap(),
                "--nonce",
                &nonce,
                "--pcrs",
                pcrs_path.to_str().unwrap(),
            ]);
            assert_eq!(
                (code, json["verdict"].as_str()),
                (0, Some("valid")),
                "{} {ak}: {json}",
                dir.display()
            );
            assert_eq!(json["input"]["pcr_digest_checked"], true);
        }
        // Without --pcrs the signature and nonce are still checked, and the output says what was not.
        let (code, json) = broker(&[
            "evidence",
            "quote",
            "--attest",
            dir.join("quote.attest.bin").to_str().unwrap(),
            "--signature",
            dir.join("quote.sig.tpmt.bin").to_str().unwrap(),
            "--ak",
            dir.join("ak.pub").to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["input"]["pcr_digest_checked"], false);
        assert_eq!(json["input"]["nonce_checked"], false);
    }
}

#[test]
fn tampered_quotes_are_invalid_and_garbage_is_unusable() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, nonce, pcrs) in swtpm_quotes() {
        let pcrs_path = tmp.path().join("pcrs.json");
        std::fs::write(&pcrs_path, pcrs.to_string()).unwrap();
        let mut attest = std::fs::read(dir.join("quote.attest.bin")).unwrap();
        let last = attest.len() - 1;
        attest[last] ^= 1;
        let bad = tmp.path().join("bad.attest");
        std::fs::write(&bad, &attest).unwrap();
        let base = |attest: &Path, nonce: &str| {
            broker(&[
                "evidence",
                "quote",
                "--attest",
                attest.to_str().unwrap(),
                "--signature",
                dir.join("quote.sig.tpmt.bin").to_str().unwrap(),
                "--ak",
                dir.join("ak.pub").to_str().unwrap(),
                "--nonce",
                nonce,
                "--pcrs",
                pcrs_path.to_str().unwrap(),
            ])
        };
        let (code, json) = base(&bad, &nonce);
        assert_eq!(
            (code, json["verdict"].as_str()),
            (1, Some("invalid")),
            "{json}"
        );
        assert_eq!(json["reason"]["kind"], "SignatureInvalid", "{json}");
        let other_nonce = "00".repeat(nonce.len() / 2);
        let (code, json) = base(&dir.join("quote.attest.bin"), &other_nonce);
        assert_eq!(
            (code, json["reason"]["kind"].as_str()),
            (1, Some("NonceMismatch")),
            "{json}"
        );
        std::fs::write(&bad, b"not a quote").unwrap();
        let (code, json) = base(&bad, &nonce);
        assert_eq!(
            (code, json["verdict"].as_str()),
            (2, Some("unusable")),
            "{json}"
        );
    }
}

/// The SHA-1-signed quote vectors (`quote-sha1/`, same layout).
fn sha1_quotes() -> Vec<(PathBuf, String, serde_json::Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(vectors().join("quote-sha1")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("vector.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        out.push((
            dir,
            v["nonce_hex"].as_str().unwrap().to_owned(),
            v["pcr_values_by_bank"].clone(),
        ));
    }
    assert!(!out.is_empty(), "expected a SHA-1 quote vector");
    out
}

#[test]
fn sha1_signed_quotes_are_valid_weak_with_their_own_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, nonce, pcrs) in sha1_quotes() {
        let pcrs_path = tmp.path().join("pcrs.json");
        std::fs::write(&pcrs_path, pcrs.to_string()).unwrap();
        let run = |attest: &Path, with_pcrs: bool| {
            let mut args = vec![
                "evidence".to_owned(),
                "quote".into(),
                "--attest".into(),
                attest.display().to_string(),
                "--signature".into(),
                dir.join("quote.sig.tpmt.bin").display().to_string(),
                "--ak".into(),
                dir.join("ak.pub").display().to_string(),
                "--nonce".into(),
                nonce.clone(),
            ];
            if with_pcrs {
                args.extend(["--pcrs".into(), pcrs_path.display().to_string()]);
            }
            broker(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        for with_pcrs in [true, false] {
            let (code, json) = run(&dir.join("quote.attest.bin"), with_pcrs);
            assert_eq!(
                (code, json["verdict"].as_str()),
                (3, Some("valid_weak")),
                "{} (pcrs: {with_pcrs}): {json}",
                dir.display()
            );
            assert_eq!(json["weak_hash"], "sha1", "{json}");
            assert_eq!(json["input"]["pcr_digest_checked"], with_pcrs);
        }
        // A forged SHA-1 quote is invalid, not weak.
        let mut attest = std::fs::read(dir.join("quote.attest.bin")).unwrap();
        let last = attest.len() - 1;
        attest[last] ^= 1;
        let bad = tmp.path().join("bad.attest");
        std::fs::write(&bad, &attest).unwrap();
        let (code, json) = run(&bad, true);
        assert_eq!(
            (code, json["reason"]["kind"].as_str()),
            (1, Some("SignatureInvalid")),
            "{json}"
        );
    }
}

#[test]
fn ek_certificates_chain_at_a_fixed_time() {
    let st = vectors().join("ekcert/stmicro/st33-rsa-ek");
    // The NV-padded certificate, with the vendor intermediates presented and the
    // GlobalSign TPM root from the bundled store, inside its validity.
    let (code, json) = broker(&[
        "evidence",
        "ekcert",
        "--cert",
        st.join("ek_with_nv_padding.der").to_str().unwrap(),
        "--intermediates",
        st.join("STM_RSA_05I.pem").to_str().unwrap(),
        "--intermediates",
        st.join("STM_RSA_RT.pem").to_str().unwrap(),
        "--at",
        "2024-06-01T00:00:00Z",
    ]);
    assert_eq!(
        (code, json["verdict"].as_str()),
        (0, Some("valid")),
        "{json}"
    );
    assert!(json["certificate"]["trailing_padding"].as_u64().unwrap() > 0);
    // Without the bundled store and no roots, nothing chains.
    let (code, json) = broker(&[
        "evidence",
        "ekcert",
        "--no-bundled",
        "--cert",
        st.join("ek.der").to_str().unwrap(),
        "--at",
        "2024-06-01T00:00:00Z",
    ]);
    assert_eq!(
        (code, json["reason"]["kind"].as_str()),
        (1, Some("NoIssuerFound")),
        "{json}"
    );
    // GCE: root and intermediate given explicitly.
    for name in ["pca-rsa-ek", "uca-ecc-ek", "uca-rsa-ek"] {
        let d = vectors().join("ekcert/gce").join(name);
        let root = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_stem().is_some_and(|s| s == "root"))
            .unwrap();
        let not_before = {
            let (_, j) = broker(&[
                "evidence",
                "ekcert",
                "--no-bundled",
                "--cert",
                d.join("ek.pem").to_str().unwrap(),
            ]);
            j["certificate"]["not_before"].as_i64().unwrap()
        };
        let at = time::OffsetDateTime::from_unix_timestamp(not_before + 86_400)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let (code, json) = broker(&[
            "evidence",
            "ekcert",
            "--no-bundled",
            "--cert",
            d.join("ek.pem").to_str().unwrap(),
            "--roots",
            root.to_str().unwrap(),
            "--intermediates",
            d.join("intermediate.crt").to_str().unwrap(),
            "--at",
            &at,
        ]);
        assert_eq!(
            (code, json["verdict"].as_str()),
            (0, Some("valid")),
            "{name}: {json}"
        );
    }
    // Unusable input.
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"junk").unwrap();
    let (code, _) = broker(&["evidence", "ekcert", "--cert", junk.to_str().unwrap()]);
    assert_eq!(code, 2);
    let (code, _) = broker(&[
        "evidence",
        "ekcert",
        "--cert",
        st.join("ek.der").to_str().unwrap(),
        "--at",
        "yesterday",
    ]);
    assert_eq!(code, 2);
}
