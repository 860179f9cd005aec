//! SEV-SNP verification against the real third-party vectors in
//! `tests/vectors/sevsnp/` (see PROVENANCE-sevsnp.md), driven by each
//! sample's `expected.json`. Times come from the certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use verifier_lib::snp::{
    parse_hcl_report, verify_chain, verify_report, verify_report_with_chain, AttestationReport,
    CrlInput, Product, SignerKind, SnpError, SnpTrustAnchors, TcbComponent, SIGNATURE_OFFSET,
    SIGNATURE_RS_LEN, SIGNED_LEN,
};
use x509_parser::prelude::{FromDer, X509Certificate};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/sevsnp")
}

/// Every certificate (DER) in a directory's .der/.pem files, not recursing.
fn certs_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let bytes = std::fs::read(&p).unwrap_or_default();
        match ext {
            "der" => out.push(bytes),
            "pem" => {
                for block in pem::parse_many(&bytes).unwrap() {
                    if block.tag() == "CERTIFICATE" {
                        out.push(block.contents().to_vec());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

struct Sample {
    dir: PathBuf,
    expected: Value,
    reports: Vec<(String, Vec<u8>)>,
    leaf: Vec<u8>,
    intermediate: Vec<u8>,
}

impl Sample {
    fn product(&self) -> Product {
        Product::from_name(self.expected["product"].as_str().unwrap()).unwrap()
    }
    fn parsed_for(&self, file: &str) -> &Value {
        let parsed = &self.expected["parsed"];
        if parsed.get("version").is_some() {
            parsed
        } else {
            &parsed[file]
        }
    }
    /// The leaf's notBefore plus one day.
    fn now(&self) -> i64 {
        let (_, c) = X509Certificate::from_der(&self.leaf).unwrap();
        c.validity().not_before.timestamp() + 86_400
    }
}

/// Every sample directory with an expected.json and at least one report.
fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            }
        }
        let exp = dir.join("expected.json");
        if !exp.exists() {
            continue;
        }
        let expected: Value = serde_json::from_slice(&std::fs::read(&exp).unwrap()).unwrap();
        let mut reports = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            if name.starts_with("report") && name.ends_with(".bin") {
                reports.push((name, std::fs::read(&p).unwrap()));
            }
        }
        reports.sort();
        let mut leaf = None;
        let mut intermediate = None;
        for der in certs_in(&dir) {
            let (_, c) = X509Certificate::from_der(&der).unwrap();
            if !c.is_ca() {
                leaf.get_or_insert(der);
            } else if c.subject() != c.issuer() {
                intermediate.get_or_insert(der);
            }
        }
        if reports.is_empty() {
            continue;
        }
        out.push(Sample {
            dir,
            expected,
            reports,
            leaf: leaf.expect("leaf certificate"),
            intermediate: intermediate.expect("ASK certificate"),
        });
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    assert!(out.len() >= 5, "expected the five sample directories");
    out
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn check_fields(report: &AttestationReport, want: &Value, ctx: &str) {
    assert_eq!(
        u64::from(report.version),
        want["version"].as_u64().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        u64::from(report.guest_svn),
        want["guest_svn"].as_u64().unwrap(),
        "{ctx}"
    );
    assert_eq!(report.policy.0, hex_u64(&want["policy"]), "{ctx}");
    assert_eq!(
        u64::from(report.vmpl),
        want["vmpl"].as_u64().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        u64::from(report.signature_algo),
        want["sig_algo"].as_u64().unwrap(),
        "{ctx}"
    );
    assert_eq!(report.current_tcb.0, hex_u64(&want["current_tcb"]), "{ctx}");
    assert_eq!(
        report.reported_tcb.0,
        hex_u64(&want["reported_tcb"]),
        "{ctx}"
    );
    assert_eq!(
        report.committed_tcb.0,
        hex_u64(&want["committed_tcb"]),
        "{ctx}"
    );
    assert_eq!(report.launch_tcb.0, hex_u64(&want["launch_tcb"]), "{ctx}");
    assert_eq!(
        report.platform_info.0,
        hex_u64(&want["platform_info"]),
        "{ctx}"
    );
    for (field, bytes) in [
        ("report_data", &report.report_data[..]),
        ("measurement", &report.measurement[..]),
        ("host_data", &report.host_data[..]),
        ("report_id", &report.report_id[..]),
        ("chip_id", &report.chip_id[..]),
    ] {
        assert_eq!(
            hex::encode(bytes),
            want[field].as_str().unwrap(),
            "{ctx}: {field}"
        );
    }
    let fms = match report.cpuid {
        Some(c) => hex::encode([c.family, c.model, c.stepping]),
        None => "000000".to_owned(),
    };
    assert_eq!(fms, want["cpuid_fms"].as_str().unwrap(), "{ctx}");
    let v = report.current_version;
    assert_eq!(
        hex::encode([v.build, v.minor, v.major]),
        want["build_minor_major"].as_str().unwrap(),
        "{ctx}"
    );
}

fn anchors() -> SnpTrustAnchors {
    SnpTrustAnchors::amd_pinned().unwrap()
}

#[test]
fn every_vector_report_verifies_with_its_chain_and_stated_fields() {
    let trust = anchors();
    let mut count = 0;
    for s in samples() {
        for (file, bytes) in &s.reports {
            let ctx = format!("{}/{file}", s.dir.display());
            let want = s.parsed_for(file);
            let parsed = AttestationReport::parse(bytes).unwrap();
            check_fields(&parsed, want, &ctx);
            for ask in [Some(s.intermediate.as_slice()), None] {
                let v = verify_report(
                    bytes,
                    &s.leaf,
                    ask,
                    &trust,
                    CrlInput::DangerousSkip,
                    Some(&parsed.report_data),
                    s.now(),
                )
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(v.product, s.product(), "{ctx}");
                assert_eq!(v.signer, SignerKind::Vcek, "{ctx}");
                assert_eq!(v.report, parsed, "{ctx}");
                assert_eq!(v.chip_id.as_deref(), Some(&parsed.chip_id[..]), "{ctx}");
                assert!(!v.revocation_checked && !v.dangerous_root, "{ctx}");
                let json = serde_json::to_value(&v).unwrap();
                assert_eq!(json["report"]["measurement"], want["measurement"], "{ctx}");
            }
            count += 1;
        }
    }
    assert!(count >= 6);
}

#[test]
fn vcek_extensions_match_reported_tcb() {
    let trust = anchors();
    for s in samples() {
        let chain = verify_chain(
            &s.leaf,
            Some(&s.intermediate),
            &trust,
            CrlInput::DangerousSkip,
            s.now(),
        )
        .unwrap();
        for (_, bytes) in &s.reports {
            let r = AttestationReport::parse(bytes).unwrap();
            let parts = r.reported_tcb.parts(chain.product);
            for c in [
                TcbComponent::Bootloader,
                TcbComponent::Tee,
                TcbComponent::Snp,
                TcbComponent::Microcode,
            ] {
                assert_eq!(chain.extensions.spl(c), parts.component(c));
            }
            assert_eq!(chain.extensions.hw_id.as_deref(), Some(&r.chip_id[..]));
        }
    }
}

#[test]
fn wrong_report_data_is_rejected() {
    let trust = anchors();
    for s in samples() {
        let (_, bytes) = &s.reports[0];
        let mut other = AttestationReport::parse(bytes).unwrap().report_data;
        other[63] ^= 1;
        let err = verify_report(
            bytes,
            &s.leaf,
            None,
            &trust,
            CrlInput::DangerousSkip,
            Some(&other),
            s.now(),
        )
        .unwrap_err();
        assert!(matches!(err, SnpError::ReportDataMismatch { .. }), "{err}");
    }
}

#[test]
fn crl_unavailable_denies_real_chains() {
    let trust = anchors();
    for s in samples() {
        let err = verify_report(
            &s.reports[0].1,
            &s.leaf,
            None,
            &trust,
            CrlInput::Unavailable,
            None,
            s.now(),
        )
        .unwrap_err();
        assert_eq!(err, SnpError::CrlUnavailable);
    }
}

#[test]
fn negative_vceks_fail() {
    let trust = anchors();
    let mut seen = 0;
    for s in samples() {
        let neg = s.dir.join("negative");
        if !neg.is_dir() {
            continue;
        }
        for bad in certs_in(&neg) {
            let err = verify_report(
                &s.reports[0].1,
                &bad,
                Some(&s.intermediate),
                &trust,
                CrlInput::DangerousSkip,
                None,
                s.now(),
            )
            .unwrap_err();
            assert!(
                matches!(err, SnpError::CertificateSignatureInvalid { .. }),
                "unexpected {err}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 2);
}

#[test]
fn every_single_byte_flip_in_signed_and_signature_regions_is_rejected() {
    let trust = anchors();
    let mut products_swept = std::collections::BTreeSet::new();
    for s in samples() {
        // One report per sample directory keeps the sweep affordable while
        // covering every product and report version in the vectors.
        let (_, bytes) = &s.reports[0];
        let chain = verify_chain(&s.leaf, None, &trust, CrlInput::DangerousSkip, s.now()).unwrap();
        verify_report_with_chain(bytes, &chain, None, s.now()).unwrap();
        let end = SIGNATURE_OFFSET + SIGNATURE_RS_LEN;
        for i in (0..SIGNED_LEN).chain(SIGNATURE_OFFSET..end) {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            assert!(
                verify_report_with_chain(&t, &chain, None, s.now()).is_err(),
                "{}: flip at {i:#x} accepted",
                s.dir.display()
            );
        }
        products_swept.insert(s.product());
    }
    assert!(!products_swept.is_empty());
}

#[test]
fn report_against_another_products_chain_is_rejected() {
    let trust = anchors();
    let ca = root().join("amd-ca");
    for s in samples() {
        for other in ["genoa", "turin_vcek"] {
            let bundle = std::fs::read(ca.join(format!("ask_ark_{other}.pem"))).unwrap();
            let ask = pem::parse_many(bundle).unwrap()[0].contents().to_vec();
            let err = verify_report(
                &s.reports[0].1,
                &s.leaf,
                Some(&ask),
                &trust,
                CrlInput::DangerousSkip,
                None,
                s.now(),
            )
            .unwrap_err();
            assert!(matches!(err, SnpError::IssuerMismatch { .. }), "{err}");
        }
    }
}

#[test]
fn real_turin_chain_verifies_with_8_byte_hwid() {
    let dir = root().join("virtee-sev/turin-chain-only");
    let certs = certs_in(&dir);
    let leaf = certs
        .iter()
        .find(|c| !X509Certificate::from_der(c).unwrap().1.is_ca())
        .unwrap();
    let (_, lc) = X509Certificate::from_der(leaf).unwrap();
    let now = lc.validity().not_before.timestamp() + 86_400;
    let chain = verify_chain(leaf, None, &anchors(), CrlInput::DangerousSkip, now).unwrap();
    assert_eq!(chain.product, Product::Turin);
    assert_eq!(chain.extensions.hw_id.as_ref().map(Vec::len), Some(8));
    assert!(chain.extensions.fmc.is_some());
    // The Turin VCEK against the Milan ASK fails.
    let milan_ask = &certs_in(&root().join("amd-ca/virtee-builtin"))
        .into_iter()
        .find(|c| {
            X509Certificate::from_der(c)
                .unwrap()
                .1
                .subject()
                .to_string()
                .contains("SEV-Milan")
        })
        .unwrap();
    assert!(verify_chain(
        leaf,
        Some(milan_ask),
        &anchors(),
        CrlInput::DangerousSkip,
        now
    )
    .is_err());
}

#[test]
fn verification_outside_certificate_validity_fails() {
    let trust = anchors();
    for s in samples() {
        let (_, c) = X509Certificate::from_der(&s.leaf).unwrap();
        for now in [
            c.validity().not_before.timestamp() - 1,
            c.validity().not_after.timestamp() + 1,
        ] {
            let err = verify_report(
                &s.reports[0].1,
                &s.leaf,
                None,
                &trust,
                CrlInput::DangerousSkip,
                None,
                now,
            )
            .unwrap_err();
            assert!(matches!(err, SnpError::CertificateNotValid { .. }), "{err}");
        }
    }
}

#[test]
fn azure_hcl_reports_bind_runtime_json() {
    let mut seen = 0;
    for s in samples() {
        let path = s.dir.join("hcl-report.bin");
        let Ok(hcl_bytes) = std::fs::read(&path) else {
            continue;
        };
        let hcl = parse_hcl_report(&hcl_bytes).unwrap();
        assert_eq!(hcl.snp_report, s.reports[0].1);
        let jwk = hcl.ak_pub_jwk.as_ref().unwrap();
        assert_eq!(jwk["kty"], "RSA");
        let v = verify_report(
            &hcl.snp_report,
            &s.leaf,
            None,
            &anchors(),
            CrlInput::DangerousSkip,
            None,
            s.now(),
        )
        .unwrap();
        assert_eq!(
            &v.report.report_data[..32],
            &verifier_lib::crypto::HashAlg::Sha256.digest(&hcl.runtime_json)[..]
        );
        // Changing one JSON byte breaks the binding.
        let json_start = hcl_bytes.windows(2).position(|w| w == b"{\"").unwrap();
        let mut bad = hcl_bytes.clone();
        bad[json_start + 3] ^= 0x01;
        assert!(matches!(
            parse_hcl_report(&bad),
            Err(SnpError::HclRuntimeDataMismatch { .. })
        ));
        // Truncation and a bad magic are rejected.
        assert!(parse_hcl_report(&hcl_bytes[..hcl_bytes.len() / 2]).is_err());
        let mut bad = hcl_bytes.clone();
        bad[0] = b'X';
        assert!(parse_hcl_report(&bad).is_err());
        seen += 1;
    }
    assert_eq!(seen, 1);
}
