//! tpm2-tools as an independent peer: quotes made by `tpm2_quote` on a live
//! swtpm (ECDSA, RSASSA and RSA-PSS AKs made by `tpm2_createak`) verify with
//! verifier-lib, and a wrong nonce or PCR value does not. (The other
//! direction — `tpm2_checkquote` accepting Writ's quotes — is in
//! `tpm_swtpm.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use swtpm_tests::{tpm2_tool, Swtpm};
use verifier_lib::crypto::HashAlg;
use verifier_lib::tpm::{verify_quote, AkPublic, PcrSelection, PcrValues, QuoteError};

fn run(swtpm: &Swtpm, tool: &str, args: &[&str]) {
    let out = tpm2_tool(swtpm, tool, args).unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for flag in ["-t", "-s", "-l"] {
        let _ = tpm2_tool(swtpm, "tpm2_flushcontext", [flag]);
    }
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

#[test]
fn tpm2_quote_output_verifies_for_every_scheme() {
    let swtpm = Swtpm::start().unwrap();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    run(
        &swtpm,
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", "ab".repeat(32))],
    );
    run(
        &swtpm,
        "tpm2_createek",
        &[
            "-c",
            &p(dir, "ek.ctx"),
            "-G",
            "rsa",
            "-u",
            &p(dir, "ek.pub"),
        ],
    );
    let pcrs = [0u8, 7, 16];
    let selection = "sha256:0,7,16";
    for (key, scheme) in [
        ("ecc256", "ecdsa"),
        ("rsa2048", "rsassa"),
        ("rsa2048", "rsapss"),
    ] {
        run(
            &swtpm,
            "tpm2_createak",
            &[
                "-C",
                &p(dir, "ek.ctx"),
                "-c",
                &p(dir, "ak.ctx"),
                "-G",
                key,
                "-g",
                "sha256",
                "-s",
                scheme,
                "-u",
                &p(dir, "ak.pub"),
                "-f",
                "tss",
            ],
        );
        let nonce: Vec<u8> = HashAlg::Sha256.digest(format!("{key}{scheme}").as_bytes());
        run(
            &swtpm,
            "tpm2_quote",
            &[
                "-c",
                &p(dir, "ak.ctx"),
                "-l",
                selection,
                "-q",
                &hex::encode(&nonce),
                "-m",
                &p(dir, "attest"),
                "-s",
                &p(dir, "sig"),
                "-g",
                "sha256",
                "--scheme",
                scheme,
            ],
        );
        run(
            &swtpm,
            "tpm2_pcrread",
            &[selection, "-o", &p(dir, "pcrs.bin")],
        );
        let raw = std::fs::read(dir.join("pcrs.bin")).unwrap();
        assert_eq!(raw.len(), 32 * pcrs.len());
        let mut values = PcrValues::default();
        for (i, pcr) in pcrs.iter().enumerate() {
            values.insert(HashAlg::Sha256, *pcr, raw[32 * i..32 * (i + 1)].to_vec());
        }
        let attest = std::fs::read(dir.join("attest")).unwrap();
        let sig = std::fs::read(dir.join("sig")).unwrap();
        let ak = AkPublic::parse_any(&std::fs::read(dir.join("ak.pub")).unwrap()).unwrap();
        let required = PcrSelection::new([(HashAlg::Sha256, pcrs.to_vec())]);
        let q = verify_quote(&attest, &sig, &ak, &nonce, &values, &required)
            .unwrap_or_else(|e| panic!("{key}/{scheme}: {e}"));
        assert_eq!(q.pcrs, values, "{key}/{scheme}");
        let mut wrong = nonce.clone();
        wrong[0] ^= 1;
        assert!(matches!(
            verify_quote(&attest, &sig, &ak, &wrong, &values, &required),
            Err(QuoteError::NonceMismatch { .. })
        ));
        let mut other = values.clone();
        other.insert(HashAlg::Sha256, 16, vec![0; 32]);
        assert!(matches!(
            verify_quote(&attest, &sig, &ak, &nonce, &other, &required),
            Err(QuoteError::PcrDigestMismatch { .. })
        ));
    }
}
