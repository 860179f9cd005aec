//! Token request cost with a quote vs with the certified request key (not
//! a test; prints figures). Both paths run against the same swtpm and the
//! same in-process broker (SQLite), client to verified token, one after the
//! other, 30 times each; the signed path is reported as a ratio of the
//! quote path measured in the same run. The quote path carries no event log
//! or IMA list here: with them its broker-side cost grows with the logs,
//! the signed path's does not.
//!
//! `TSS2_LOG=all+none cargo run --release -p attester --example request_key_measure`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Instant;

use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use swtpm_tests::Swtpm;
use verifier_lib::crypto::HashAlg;
use verifier_lib::token::SigningKey;
use writ_attester::commands::{self, Settings};
use writ_attester::request_key;
use writ_attester::tpm::{AkAlg, Tpm};

const PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 16];
const RUNS: usize = 30;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let swtpm = Swtpm::start().unwrap();
    let pcrs: BTreeMap<u8, Vec<u8>> = Tpm::open(&swtpm.tcti())
        .unwrap()
        .pcr_read(&[(HashAlg::Sha256, PCRS.to_vec())])
        .unwrap()
        .remove(&HashAlg::Sha256)
        .unwrap();
    let digest = [7u8; 32];
    let broker = TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy: policy_toml("m", &pcrs, &[("hello", digest)]),
            ek_roots_pem: swtpm.ca_roots_pem(),
            bundled_manufacturers: false,
        },
        |_| {},
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Settings {
        broker: broker.url(),
        failover: Default::default(),
        ca_cert: None,
        tcti: swtpm.tcti(),
        state_dir: dir.path().to_owned(),
        issuer: "writ-broker".into(),
        logs: writ_attester::logs::LogSources::none(),
    };
    commands::enroll(&s, AkAlg::EccP256).unwrap();
    commands::attest(&s).unwrap();
    request_key::register(&s).unwrap();
    let cnf = SigningKey::generate()
        .unwrap()
        .verifying_key()
        .to_cose_key_bytes()
        .unwrap();

    let (mut quote, mut signed) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        commands::obtain_token_with(&s, "hello", &digest, Some(&cnf)).unwrap();
        quote.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        request_key::obtain_token_signed(&s, "hello", &digest, Some(&cnf)).unwrap();
        signed.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (q, k) = (median(quote), median(signed));
    println!(
        "token request, client to verified token (median of {RUNS}): quote {q:.1} ms, \
         request key {k:.1} ms ({:.2}x the quote path)",
        k / q
    );
}
