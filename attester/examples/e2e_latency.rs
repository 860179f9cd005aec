//! Latency of `enroll` and `attest` end to end: the attester library against
//! a real in-process broker (SQLite) over loopback HTTP, on swtpm. Prints the
//! median of 20 runs of each. A measurement, not a test: run it by hand.
//!
//! `cargo run --release -p attester --example e2e_latency`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use swtpm_tests::Swtpm;
use verifier_lib::crypto::HashAlg;
use writ_attester::commands::{self, Settings};
use writ_attester::tpm::{AkAlg, Tpm};

const RUNS: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let swtpm = Swtpm::start().unwrap();
    let pcrs = {
        let mut tpm = Tpm::open(&swtpm.tcti()).unwrap();
        let v = tpm
            .pcr_read(&[(HashAlg::Sha256, (0..8).collect())])
            .unwrap();
        v.get(&HashAlg::Sha256).cloned().unwrap()
    };
    let broker = TestBroker::start(BrokerOptions {
        policy: policy_toml("latency", &pcrs, &[]),
        ek_roots_pem: swtpm.ca_roots_pem(),
        bundled_manufacturers: false,
    })
    .unwrap();
    for ak in [AkAlg::EccP256, AkAlg::Rsa2048] {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            broker: broker.url(),
            failover: Default::default(),
            ca_cert: None,
            tcti: swtpm.tcti(),
            state_dir: dir.path().to_owned(),
            issuer: "writ-broker".into(),
            logs: writ_attester::logs::LogSources::none(),
        };
        let (mut enroll, mut attest) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let t = Instant::now();
            commands::enroll(&settings, ak).unwrap();
            enroll.push(t.elapsed());
            let t = Instant::now();
            let a = commands::attest(&settings).unwrap();
            attest.push(t.elapsed());
            assert_eq!(a.verdict, "affirming");
        }
        println!(
            "{ak:?}: enroll median {:.1} ms, attest median {:.1} ms ({RUNS} runs each)",
            median(enroll).as_secs_f64() * 1e3,
            median(attest).as_secs_f64() * 1e3
        );
    }
}
