//! Quotes signed with SHA-1 (RSASSA-SHA1, as some firmware and Windows hosts
//! still make them): refused by default with a typed error, verified and
//! marked weak when a caller opts in, and accepted by an appraisal only
//! where the policy group sets `dangerous_accept_sha1_signatures`, which the
//! appraisal's audit leaf records. Vectors: `tests/vectors/quote-sha1/`
//! (swtpm + tpm2-tools, checked with `tpm2_checkquote`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use verifier_lib::appraisal::{appraise_tpm, TpmEvidenceRef, Verdict};
use verifier_lib::audit::Decision as Leaf;
use verifier_lib::crypto::HashAlg;
use verifier_lib::decision::{
    appraisal::Prior, decide, Appraised, EvidenceKind, HostStatus, Input,
};
use verifier_lib::policy::{EvidenceStage, Failure, Policy, Warning};
use verifier_lib::tpm::{
    verify_quote, verify_quote_with_options, AkPublic, PcrSelection, PcrValues, QuoteError,
    QuoteOptions, Signature,
};

struct Vector {
    dir: PathBuf,
    attest: Vec<u8>,
    sig: Vec<u8>,
    ak_pub: Vec<u8>,
    nonce: Vec<u8>,
    pcrs: PcrValues,
    by_bank: Value,
}

/// Every vector under `tests/vectors/quote-sha1/` (one directory each).
fn vectors() -> Vec<Vector> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/quote-sha1");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("vector.json")) else {
            continue;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
        out.push(Vector {
            attest: read("quote.attest.bin"),
            sig: read("quote.sig.tpmt.bin"),
            ak_pub: read("ak.pub"),
            nonce: hex::decode(v["nonce_hex"].as_str().unwrap()).unwrap(),
            pcrs: PcrValues::from_json(&v["pcr_values_by_bank"].to_string()).unwrap(),
            by_bank: v["pcr_values_by_bank"].clone(),
            dir,
        });
    }
    assert!(!out.is_empty(), "no SHA-1 quote vector");
    out
}

fn ak(v: &Vector) -> AkPublic {
    AkPublic::parse_any(&v.ak_pub).unwrap()
}

fn accept() -> QuoteOptions {
    QuoteOptions {
        dangerous_accept_sha1_signatures: true,
    }
}

#[test]
fn sha1_quotes_are_refused_by_default_and_verified_when_accepted() {
    for v in vectors() {
        let sig = Signature::parse(&v.sig).unwrap();
        assert_eq!(sig.hash, HashAlg::Sha1, "{}", v.dir.display());
        let none = PcrSelection::default();
        let r = verify_quote(&v.attest, &v.sig, &ak(&v), &v.nonce, &v.pcrs, &none);
        assert!(
            matches!(r, Err(QuoteError::WeakSignatureHash { .. })),
            "{}: {r:?}",
            v.dir.display()
        );
        let q =
            verify_quote_with_options(&v.attest, &sig, &ak(&v), &v.nonce, &v.pcrs, &none, accept())
                .unwrap_or_else(|e| panic!("{}: {e}", v.dir.display()));
        assert_eq!(q.accepted_weak_hash, Some(HashAlg::Sha1));
        assert_eq!(q.nonce, v.nonce);
        // The SPKI form of the same AK verifies too.
        let pem = std::fs::read(v.dir.join("ak.pem")).unwrap();
        let spki = AkPublic::parse_any(&pem).unwrap();
        verify_quote_with_options(&v.attest, &sig, &spki, &v.nonce, &v.pcrs, &none, accept())
            .unwrap();
    }
}

#[test]
fn accepting_sha1_still_rejects_forgeries_wrong_nonces_and_pcrs() {
    for v in vectors() {
        let sig = Signature::parse(&v.sig).unwrap();
        let none = PcrSelection::default();
        // Every single-byte change of the attest is rejected.
        for i in 0..v.attest.len() {
            let mut a = v.attest.clone();
            a[i] ^= 0x01;
            let r =
                verify_quote_with_options(&a, &sig, &ak(&v), &v.nonce, &v.pcrs, &none, accept());
            assert!(r.is_err(), "{}: flip at {i} accepted", v.dir.display());
        }
        let mut forged = sig.clone();
        let last = forged.bytes.len() - 1;
        forged.bytes[last] ^= 0x01;
        let r = verify_quote_with_options(
            &v.attest,
            &forged,
            &ak(&v),
            &v.nonce,
            &v.pcrs,
            &none,
            accept(),
        );
        assert_eq!(r.unwrap_err(), QuoteError::SignatureInvalid);
        let r =
            verify_quote_with_options(&v.attest, &sig, &ak(&v), &[0; 32], &v.pcrs, &none, accept());
        assert!(matches!(r, Err(QuoteError::NonceMismatch { .. })), "{r:?}");
        let mut other = v.by_bank.clone();
        other["sha256"]["16"] = Value::String("11".repeat(32));
        let other = PcrValues::from_json(&other.to_string()).unwrap();
        let r =
            verify_quote_with_options(&v.attest, &sig, &ak(&v), &v.nonce, &other, &none, accept());
        assert!(
            matches!(r, Err(QuoteError::PcrDigestMismatch { .. })),
            "{r:?}"
        );
    }
}

fn policy(v: &Vector, opt_in: bool) -> Policy {
    let pcr16 = v.by_bank["sha256"]["16"].as_str().unwrap();
    Policy::parse_toml(&format!(
        r#"id = "legacy-hosts"

[[groups]]
name = "legacy"
hosts = ["*"]
pcr_bank = "sha256"
{opt_in}
[groups.pcrs]
16 = ["{pcr16}"]
"#,
        opt_in = if opt_in {
            "dangerous_accept_sha1_signatures = true"
        } else {
            ""
        }
    ))
    .unwrap()
}

#[test]
fn only_a_group_that_opts_in_affirms_a_sha1_quote_and_the_leaf_says_so() {
    for v in vectors() {
        let evidence = TpmEvidenceRef {
            attest: &v.attest,
            signature: &v.sig,
            pcrs: &v.pcrs,
        };
        // Default: refused, with the reason naming the opt-in.
        let refused = appraise_tpm(&policy(&v, false), "host-a", &v.ak_pub, evidence, &v.nonce);
        assert_eq!(refused.verdict, Verdict::Contraindicated);
        assert!(!refused.authentic());
        assert!(refused.warnings.is_empty());
        match refused.failures.as_slice() {
            [Failure::EvidenceRejected {
                stage: EvidenceStage::Quote,
                reason,
            }] => assert!(
                reason.contains("dangerous_accept_sha1_signatures"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }

        // Opted in: affirming, with the accepted risk recorded.
        let accepted = appraise_tpm(&policy(&v, true), "host-a", &v.ak_pub, evidence, &v.nonce);
        assert_eq!(
            accepted.verdict,
            Verdict::Affirming,
            "{:?}",
            accepted.failures
        );
        assert_eq!(
            accepted.warnings,
            vec![Warning::WeakSignatureHashAccepted {
                hash: HashAlg::Sha1,
                group: "legacy".into(),
            }]
        );

        // The decision's appraisal leaf carries the warning.
        let p = policy(&v, true);
        let d = decide(Input {
            host_id: "host-a",
            prior: Prior {
                status: Some(HostStatus::Trusted),
                clock: None,
            },
            appraised: Appraised {
                kind: EvidenceKind::Tpm,
                verdict: accepted.verdict,
                authentic: accepted.authentic(),
                failures: accepted.failures.clone(),
                warnings: accepted.warnings.clone(),
                group: accepted.group.clone(),
                clock: None,
                new_boot_log: false,
                evidence_digest: vec![1; 32],
                endorsement_digest: None,
            },
            request: None,
            policy: &p,
            boot_log_required: false,
            now: 1_800_000_000,
        });
        assert_eq!(d.verdict, Verdict::Affirming);
        let warnings = d
            .leaves
            .iter()
            .find_map(|l| match &l.decision {
                Leaf::Appraisal { warnings, .. } => Some(warnings.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(warnings.len(), 1);
        let logged: Warning = serde_json::from_str(&warnings[0]).unwrap();
        assert_eq!(logged, accepted.warnings[0]);
    }
}
