//! Broker-level SEV-SNP appraisal cost as a ratio to one raw P-384 ECDSA
//! verify (aws-lc-rs) of the same report, measured in the same run:
//!
//! * full: chain (ASK and VCEK RSA-PSS signatures, CRL signature and
//!   serials) + report signature + REPORT_DATA + `[groups.snp]` policy +
//!   token mint (CWT with the `cpu` submodule, ES256) — what one
//!   `/v1/snp/tokens` costs in CPU besides HTTP, JSON and SQLite;
//! * cached chain: the same with an already verified chain.
//!
//! `cargo run --release -p broker --example snp_appraisal`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../verifier-lib/tests/snp_support/mod.rs"]
mod snp_support;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use snp_support::*;
use verifier_lib::policy::Policy;
use verifier_lib::snp::{
    self, expected_report_data, verify_chain, verify_report_with_chain, Crl, CrlInput, Product,
    SnpTrustAnchors,
};
use verifier_lib::snp_appraisal::{appraise_snp, snp_host_id, SnpEvidenceRef};
use verifier_lib::token::{self, Appraisal, Claims, EarStatus, SigningKey, TrustVector};

fn mint(key: &SigningKey, v: &snp::VerifiedReport, host: &str) -> Vec<u8> {
    let mut submods = BTreeMap::new();
    submods.insert(
        "cpu".to_owned(),
        verifier_lib::decision::claims::cpu_submod(v),
    );
    let claims = Claims {
        iss: "writ-broker".into(),
        sub: host.to_owned(),
        aud: "hello".into(),
        exp: NOW + 300,
        nbf: NOW,
        iat: NOW,
        cti: vec![7; 16],
        eat_nonce: Some(vec![1; 32]),
        eat_profile: token::PROFILE.to_owned(),
        appraisal: Appraisal {
            status: EarStatus::Affirming,
            trust_vector: TrustVector::default(),
            policy_id: "bench".into(),
            verifier_id: "bench".into(),
            submods,
        },
        workload_digest: Some(vec![2; 32]),
        cnf: None,
        lineage: None,
        scope: Vec::new(),
        audit_index: None,
        offline_ok: false,
        status: None,
    };
    token::mint(&claims, key).unwrap()
}

/// Median µs per call over `rounds` batches of `n` calls.
fn median_us(rounds: usize, n: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let product = Product::Milan;
    let c = chain(product);
    let trust = SnpTrustAnchors::amd_pinned()
        .unwrap()
        .with_dangerous_extra_root(product, &c.ark)
        .unwrap();
    let crl = Crl::parse(&crl(
        product,
        &[&[1], &[2]],
        NOW - 60,
        NOW + 86_400,
        rsa_key(0),
    ))
    .unwrap();
    let nonce = [9u8; 32];
    let rd = expected_report_data(&nonce, b"canonical request");
    let mut spec = report_spec(&c);
    spec.report_data = rd;
    let report = signed_report(&spec);
    let host = snp_host_id(&verifier_lib::snp::AttestationReport::parse(&report).unwrap()).unwrap();
    let policy = Policy::parse_toml(&format!(
        "id = \"bench\"\n[[groups]]\nname = \"snp\"\nhosts = [\"*\"]\n[groups.snp]\n\
         allowed_measurements = [\"{}\"]\ndangerous_allow_extra_root = true\n\
         dangerous_any_host_data = true\n\
         [groups.snp.min_reported_tcb]\nsnp = 20\n",
        hex::encode(spec.measurement)
    ))
    .unwrap();
    let key = SigningKey::generate().unwrap();
    let ev = SnpEvidenceRef {
        report: &report,
        leaf: &c.leaf,
        intermediate: Some(&c.ask),
    };
    let vcek_point = ec_key(0).public_key().as_ref().to_vec();
    let sig = {
        let r = verifier_lib::snp::AttestationReport::parse(&report).unwrap();
        [r.signature_r, r.signature_s].concat()
    };
    // Sanity: every path accepts.
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &vcek_point)
        .verify(&report[..0x2a0], &sig)
        .unwrap();
    let a = appraise_snp(&policy, &host, ev, &trust, Some(&crl), &rd, NOW);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    let cached = verify_chain(&c.leaf, Some(&c.ask), &trust, CrlInput::Fresh(&crl), NOW).unwrap();

    let rounds = 9;
    let raw = median_us(rounds, 400, || {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &vcek_point)
            .verify(black_box(&report[..0x2a0]), &sig)
            .unwrap();
    });
    let full = median_us(rounds, 100, || {
        let a = appraise_snp(&policy, &host, ev, &trust, Some(&crl), &rd, NOW);
        let v = a.verified.as_ref().unwrap();
        black_box(mint(&key, v, &host));
    });
    let appraise_only = median_us(rounds, 100, || {
        black_box(appraise_snp(
            &policy,
            &host,
            ev,
            &trust,
            Some(&crl),
            &rd,
            NOW,
        ));
    });
    let group = policy.groups[0].snp.as_ref().unwrap();
    let with_cache = median_us(rounds, 200, || {
        let v = verify_report_with_chain(&report, &cached, Some(&rd), NOW).unwrap();
        assert!(snp::appraise(&v, group).is_empty());
        black_box(mint(&key, &v, &host));
    });
    println!("SEV-SNP broker-level appraisal (median of {rounds} batches, one core)");
    println!("  raw P-384 verify (baseline)           {raw:8.1} µs  1.0x");
    println!(
        "  full chain + CRL + policy             {appraise_only:8.1} µs  {:.1}x",
        appraise_only / raw
    );
    println!(
        "  full chain + CRL + policy + mint      {full:8.1} µs  {:.1}x",
        full / raw
    );
    println!(
        "  cached chain + report + policy + mint {with_cache:8.1} µs  {:.1}x",
        with_cache / raw
    );
    println!("  (test chain: RSA-2048 ARK/ASK; AMD's are RSA-4096, so the full-chain figure is a lower bound)");
}
