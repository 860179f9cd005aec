//! Token mint and verify throughput against a raw aws-lc-rs ES256 verify of a
//! 300-byte message, measured in the same run.
//!
//! `cargo bench -p verifier-lib --bench token -- --warm-up-time 1 --measurement-time 3`
//! runs the criterion benchmarks, then an interleaved timing loop that prints
//! ops/s and the verify/raw ratio.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ParsedPublicKey, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use criterion::Criterion;
use verifier_lib::token::*;

const NOW: i64 = 1_767_225_600;
const ISSUER: &str = "https://broker.writ.test";

struct Fixture {
    key: SigningKey,
    claims: Claims,
    token: Vec<u8>,
    verifier: TokenVerifier,
    raw_point: Vec<u8>,
    raw_msg: Vec<u8>,
    raw_sig: Vec<u8>,
    raw_parsed: ParsedPublicKey,
}

/// A realistic token: TPM and SEV-SNP submodules, workload key, digest, scope.
fn claims(workload: &SigningKey) -> Claims {
    let mut tpm = SubmodClaims::new();
    tpm.insert("pcr-digest".into(), ClaimValue::Bytes(vec![0xab; 32]));
    tpm.insert("ak-name".into(), ClaimValue::Bytes(vec![0x0b; 34]));
    let mut cpu = SubmodClaims::new();
    cpu.insert("measurement".into(), ClaimValue::Bytes(vec![0x11; 48]));
    cpu.insert("tcb".into(), ClaimValue::Int(0x1500_0000_0000_0004));
    let submods = BTreeMap::from([("tpm".to_string(), tpm), ("cpu".to_string(), cpu)]);
    Claims {
        iss: ISSUER.into(),
        sub: "host:node-17".into(),
        aud: "workload:payments-api".into(),
        exp: NOW + 300,
        nbf: NOW,
        iat: NOW,
        cti: vec![7; 16],
        eat_nonce: Some(vec![0x5a; 32]),
        eat_profile: PROFILE.into(),
        appraisal: Appraisal {
            status: EarStatus::Affirming,
            trust_vector: TrustVector {
                instance_identity: Some(2),
                configuration: Some(2),
                executables: Some(2),
                hardware: Some(2),
                ..TrustVector::default()
            },
            policy_id: "policy:default@3".into(),
            verifier_id: "writ-broker/0.1.0".into(),
            submods,
        },
        workload_digest: Some(vec![0xcd; 32]),
        cnf: Some(workload.verifying_key()),
        lineage: None,
        scope: vec!["read:secrets/db".into()],
        audit_index: Some(123_456),
        offline_ok: false,
        status: None,
    }
}

fn fixture() -> Fixture {
    let key = SigningKey::generate().unwrap();
    let workload = SigningKey::generate().unwrap();
    let claims = claims(&workload);
    let token = mint(&claims, &key).unwrap();
    let verifier = TokenVerifier::new(
        KeySet::new(vec![
            SigningKey::generate().unwrap().verifying_key(),
            key.verifying_key(),
        ])
        .unwrap(),
        Expectations::new(ISSUER, "workload:payments-api"),
    );
    verifier.verify(&token, NOW).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let raw_msg = vec![0x42u8; 300];
    let raw_sig = pair.sign(&rng, &raw_msg).unwrap().as_ref().to_vec();
    let raw_point = pair.public_key().as_ref().to_vec();
    let raw_parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &raw_point).unwrap();
    Fixture {
        key,
        claims,
        token,
        verifier,
        raw_point,
        raw_msg,
        raw_sig,
        raw_parsed,
    }
}

fn mint_once(f: &Fixture) {
    black_box(mint(black_box(&f.claims), &f.key).unwrap());
}

fn verify_once(f: &Fixture) {
    black_box(f.verifier.verify(black_box(&f.token), NOW).unwrap());
}

fn raw_once(f: &Fixture) {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, black_box(&f.raw_point))
        .verify(black_box(&f.raw_msg), black_box(&f.raw_sig))
        .unwrap();
}

fn raw_parsed_once(f: &Fixture) {
    f.raw_parsed
        .verify_sig(black_box(&f.raw_msg), black_box(&f.raw_sig))
        .unwrap();
}

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("token");
    g.bench_function("mint", |b| b.iter(|| mint_once(f)));
    g.bench_function("verify", |b| b.iter(|| verify_once(f)));
    g.bench_function("raw_es256_verify_300B", |b| b.iter(|| raw_once(f)));
    g.bench_function("raw_es256_verify_300B_parsed_key", |b| {
        b.iter(|| raw_parsed_once(f))
    });
    let payload = f.claims.to_cbor_bytes().unwrap();
    g.bench_function("decode_claims", |b| {
        b.iter(|| black_box(Claims::from_cbor_bytes(black_box(&payload)).unwrap()))
    });
    g.finish();
}

/// Interleaved rounds so that drift on a shared machine hits every case alike.
fn summary(f: &Fixture, budget: Duration) {
    type Case = (&'static str, fn(&Fixture));
    let cases: [Case; 4] = [
        ("mint", mint_once),
        ("verify", verify_once),
        ("raw", raw_once),
        ("raw-parsed", raw_parsed_once),
    ];
    let mut totals = [(0u64, Duration::ZERO); 4];
    let rounds = 20u32;
    let slice = budget / (rounds * 4);
    for _ in 0..rounds {
        for ((_, run), total) in cases.iter().zip(totals.iter_mut()) {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < slice {
                run(f);
                n += 1;
            }
            total.0 += n;
            total.1 += start.elapsed();
        }
    }
    let ops: Vec<f64> = totals
        .iter()
        .map(|(n, t)| *n as f64 / t.as_secs_f64())
        .collect();
    println!();
    println!(
        "token summary ({} B token, interleaved, {:?} total):",
        f.token.len(),
        budget
    );
    for ((name, _), o) in cases.iter().zip(&ops) {
        println!("  {name:<11} {o:>10.0} ops/s");
    }
    println!(
        "  verify/raw        = {:.1}% (target >= 90%)",
        100.0 * ops[1] / ops[2]
    );
    println!("  verify/raw-parsed = {:.1}%", 100.0 * ops[1] / ops[3]);
    println!("  mint/raw          = {:.1}%", 100.0 * ops[0] / ops[2]);
}

fn main() {
    let f = fixture();
    let benching = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &f);
    c.final_summary();
    summary(
        &f,
        if benching {
            Duration::from_secs(4)
        } else {
            Duration::from_millis(80)
        },
    );
}
