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

/// Every quote vector directory that keeps the PCR file tpm2-tools wrote
/// (`tpm2_quote -o`): (dir, attest, signature, ak, pcr file, nonce hex).
fn quotes_with_tpm2_tools_pcr_files() -> Vec<[PathBuf; 5]> {
    fn dirs(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs(&p, out);
            } else if p.file_name().is_some_and(|n| n == "vector.json") {
                out.push(dir.to_owned());
            }
        }
    }
    let mut found = Vec::new();
    for root in ["quote", "quote-sha1"] {
        dirs(&vectors().join(root), &mut found);
    }
    found.sort();
    let mut out = Vec::new();
    for dir in found {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vector.json")).unwrap())
                .unwrap();
        let Some(pcr_file) = ["pcrs.serialized.bin", "quotepcr.out"]
            .into_iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
        else {
            continue;
        };
        // A role names its file first ("quotesig.out (TPMT_SIGNATURE)").
        let file = |role: &str| {
            let name = v[role].as_str().unwrap().split_whitespace().next().unwrap();
            dir.join(name)
        };
        let nonce = PathBuf::from(v["nonce_hex"].as_str().unwrap());
        out.push([
            file("attest"),
            file("signature"),
            file("ak_public"),
            pcr_file,
            nonce,
        ]);
    }
    assert!(
        out.len() >= 5,
        "expected the swtpm, keylime and SHA-1 PCR files"
    );
    out
}

#[test]
fn quote_pcrs_accept_the_tpm2_tools_pcr_file() {
    let tmp = tempfile::tempdir().unwrap();
    for [attest, sig, ak, pcr_file, nonce] in quotes_with_tpm2_tools_pcr_files() {
        let run = |pcrs: &Path| {
            broker(&[
                "evidence",
                "quote",
                "--attest",
                attest.to_str().unwrap(),
                "--signature",
                sig.to_str().unwrap(),
                "--ak",
                ak.to_str().unwrap(),
                "--nonce",
                nonce.to_str().unwrap(),
                "--pcrs",
                pcrs.to_str().unwrap(),
            ])
        };
        let (code, json) = run(&pcr_file);
        let verdict = json["verdict"].as_str().unwrap();
        assert!(
            (code, verdict) == (0, "valid") || (code, verdict) == (3, "valid_weak"),
            "{}: {json}",
            pcr_file.display()
        );
        assert_eq!(json["input"]["pcrs_format"], "tpm2-tools", "{json}");
        assert_eq!(json["input"]["pcr_digest_checked"], true);

        // One changed byte in the first digest: the PCR digest no longer matches.
        let mut bytes = std::fs::read(&pcr_file).unwrap();
        bytes[136 + 4 + 2] ^= 0x01;
        let changed = tmp.path().join("changed.pcrs");
        std::fs::write(&changed, &bytes).unwrap();
        let (code, json) = run(&changed);
        assert_eq!(
            (code, json["reason"]["kind"].as_str()),
            (1, Some("PcrDigestMismatch")),
            "{}: {json}",
            pcr_file.display()
        );
        // A truncated file is unusable input, with the reason.
        std::fs::write(&changed, &bytes[..bytes.len() - 1]).unwrap();
        let (code, json) = run(&changed);
        assert_eq!((code, json["verdict"].as_str()), (2, Some("unusable")));
        assert!(
            json["reason"]["message"]
                .as_str()
                .unwrap()
                .contains("tpm2-tools PCR file"),
            "{json}"
        );
    }
}

#[test]
fn quote_has_no_at_option() {
    let [attest, sig, ak, _, _] = quotes_with_tpm2_tools_pcr_files().remove(0);
    let out = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(["evidence", "quote", "--attest"])
        .arg(&attest)
        .arg("--signature")
        .arg(&sig)
        .arg("--ak")
        .arg(&ak)
        .args(["--at", "2024-05-01T00:00:00Z"])
        .output()
        .unwrap();
    // A usage error (clap: exit 2, nothing on stdout) naming the option.
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'--at'"), "{stderr}");
}

/// Every binary IMA list with the ASCII list it was converted from.
fn binary_ima_lists() -> Vec<(PathBuf, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .file_name()
                .is_some_and(|n| n == "binary_runtime_measurements")
            {
                out.push((p.clone(), dir.join("ascii_runtime_measurements")));
            }
        }
    }
    let mut out = Vec::new();
    walk(&vectors().join("ima"), &mut out);
    out.sort();
    assert!(out.len() >= 2, "expected binary IMA lists");
    out
}

#[test]
fn ima_binary_lists_are_detected_and_replay_like_their_ascii_form() {
    let tmp = tempfile::tempdir().unwrap();
    for (binary, ascii) in binary_ima_lists() {
        let (code, from_binary) = broker(&["evidence", "ima", binary.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {from_binary}", binary.display());
        assert_eq!(from_binary["format"], "binary");
        let (_, from_ascii) = broker(&["evidence", "ima", ascii.to_str().unwrap()]);
        assert_eq!(from_ascii["format"], "ascii");
        for key in [
            "entries",
            "templates",
            "violations",
            "boot_aggregate",
            "pcr10",
        ] {
            assert_eq!(
                from_binary[key],
                from_ascii[key],
                "{}: {key}",
                binary.display()
            );
        }
        for bank in ["sha1", "sha256"] {
            let pcr10 = from_binary["pcr10"][bank].as_str().unwrap();
            let (code, json) = broker(&[
                "evidence",
                "ima",
                binary.to_str().unwrap(),
                "--pcr10",
                pcr10,
            ]);
            assert_eq!((code, json["verdict"].as_str()), (0, Some("valid")));
        }
        // A changed byte of the last entry's template data breaks its template hash.
        let mut bytes = std::fs::read(&binary).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        let bad = tmp.path().join("binary_runtime_measurements");
        std::fs::write(&bad, &bytes).unwrap();
        let (code, json) = broker(&["evidence", "ima", bad.to_str().unwrap()]);
        assert_eq!(
            (code, json["verdict"].as_str()),
            (2, Some("unusable")),
            "{json}"
        );
    }
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_with_its_verdict() {
    let (list, _) = binary_ima_lists().remove(0);
    let (reader, writer) = std::io::pipe().unwrap();
    // Nobody reads: every write to the pipe fails with EPIPE (`... | head`
    // after head exited).
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(["evidence", "ima"])
        .arg(&list)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0));
    // And an invalid verdict keeps its own status.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(["evidence", "ima"])
        .arg(&list)
        .args(["--pcr10", &"00".repeat(20)])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));
}
