//! SEV-SNP verification cost relative to a raw aws-lc-rs P-384 verify of
//! the same report, measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};
use verifier_lib::crypto::PublicKey;
use verifier_lib::snp::{
    verify_chain, verify_report, verify_report_with_chain, AttestationReport, CrlInput,
    SnpTrustAnchors, VerifiedChain, SIGNED_LEN,
};
use x509_parser::prelude::{FromDer, X509Certificate};

const REPORT: &[u8] = include_bytes!("../tests/vectors/sevsnp/go-sev-guest/milan-v2/report.bin");
const VCEK: &[u8] = include_bytes!("../tests/vectors/sevsnp/go-sev-guest/milan-v2/vcek.der");
const ASK: &[u8] = include_bytes!("../ca/amd/milan_ask.der");

struct Fixture {
    trust: SnpTrustAnchors,
    chain: VerifiedChain,
    now: i64,
    point: Vec<u8>,
    sig: Vec<u8>,
}

fn fixture() -> Fixture {
    let (_, cert) = X509Certificate::from_der(VCEK).unwrap();
    let now = cert.validity().not_before.timestamp() + 86_400;
    let trust = SnpTrustAnchors::amd_pinned().unwrap();
    let chain = verify_chain(VCEK, Some(ASK), &trust, CrlInput::DangerousSkip, now).unwrap();
    let PublicKey::Ec { point, .. } = chain.public_key().clone() else {
        panic!("VCEK key is EC")
    };
    let report = AttestationReport::parse(REPORT).unwrap();
    let sig = [report.signature_r, report.signature_s].concat();
    Fixture {
        trust,
        chain,
        now,
        point,
        sig,
    }
}

fn raw_verify(f: &Fixture) {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &f.point)
        .verify(&REPORT[..SIGNED_LEN], &f.sig)
        .unwrap();
}

fn cached(f: &Fixture) {
    verify_report_with_chain(REPORT, &f.chain, None, f.now).unwrap();
}

fn full(f: &Fixture) {
    verify_report(
        REPORT,
        VCEK,
        Some(ASK),
        &f.trust,
        CrlInput::DangerousSkip,
        None,
        f.now,
    )
    .unwrap();
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    c.bench_function("snp/raw_aws_lc_p384_verify", |b| {
        b.iter(|| raw_verify(black_box(&f)))
    });
    c.bench_function("snp/verify_report_with_cached_chain", |b| {
        b.iter(|| cached(black_box(&f)))
    });
    c.bench_function("snp/verify_report_full_chain", |b| {
        b.iter(|| full(black_box(&f)))
    });
}

fn per_op(f: &Fixture, op: fn(&Fixture)) -> Duration {
    for _ in 0..20 {
        op(f);
    }
    let n = 400u32;
    let start = Instant::now();
    for _ in 0..n {
        op(black_box(f));
    }
    start.elapsed() / n
}

/// Prints the ratios to the raw P-384 verify, measured back to back.
fn ratios() {
    let f = fixture();
    let raw = per_op(&f, raw_verify);
    let cached_t = per_op(&f, cached);
    let full_t = per_op(&f, full);
    let ratio = |d: Duration| d.as_secs_f64() / raw.as_secs_f64();
    println!("snp ratios (same run): raw P-384 verify {raw:?} = 1.00");
    println!(
        "  verify_report_with_chain (cached chain): {cached_t:?} = {:.2}x raw",
        ratio(cached_t)
    );
    println!(
        "  verify_report (full chain, 2 RSA-4096 PSS verifies): {full_t:?} = {:.2}x raw",
        ratio(full_t)
    );
}

criterion_group!(snp, benches);
criterion_main!(snp, ratios);
