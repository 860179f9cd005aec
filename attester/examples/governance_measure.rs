//! Measurements of continuous governance (not a test; prints figures):
//!
//! 1. time from a failing re-attestation to the relying-party gate's first
//!    refusal, with the SSE push and with 1 s polling (swtpm + real broker);
//! 2. size, signing and verification time of a status list of 100 000
//!    revoked tokens, against SHA-256 over the same bytes as baseline;
//! 3. cost of a PoP-checked request through the gate layer vs the same
//!    request through the bare service (ratio).
//!
//! `TSS2_LOG=all+none cargo run --release -p attester --example governance_measure`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use swtpm_tests::Swtpm;
use tower::ServiceExt;
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::Window;
use verifier_lib::status::StatusList;
use verifier_lib::token::{Audience, Expectations, KeySet, SigningKey, TokenVerifier};
use writ_attester::commands::{self, Settings};
use writ_attester::tpm::{AkAlg, Tpm};
use writ_gate::{self as gate, FollowMode, GateConfig, GateLayer, GateState, StatusFollower};

const PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 16];

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn gate_config(keys: KeySet) -> GateConfig {
    GateConfig {
        verifier: TokenVerifier::new(
            keys,
            Expectations {
                issuer: "writ-broker".into(),
                audience: Audience::Exactly("hello".into()),
                leeway_secs: 30,
                max_lifetime_secs: 3600,
                require_workload_digest: false,
            },
        ),
        pop_window: Window::default(),
        max_status_age_secs: 60,
        allow_offline: Default::default(),
        replay_capacity: 1_000_000,
        replay_capacity_per_key: 1_000_000,
        max_body_bytes: 1 << 20,
    }
}

fn app(state: Option<Arc<GateState>>) -> axum::Router {
    let r = axum::Router::new().route("/work", axum::routing::post(|| async { "ok" }));
    match state {
        Some(s) => r.layer(GateLayer::new(s)),
        None => r,
    }
}

/// One run of "PCR 16 changes → re-attestation fails → gate refuses".
fn revocation_latency(mode: FollowMode, rt: &tokio::runtime::Runtime) -> f64 {
    let probe = Swtpm::start().unwrap();
    let pcrs: BTreeMap<u8, Vec<u8>> = Tpm::open(&probe.tcti())
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
            ek_roots_pem: probe.ca_roots_pem(),
            bundled_manufacturers: false,
        },
        |c| c.status.poll_interval_ms = 100,
    )
    .unwrap();
    let swtpm = Swtpm::start().unwrap();
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
    let key = SigningKey::generate().unwrap();
    let cnf = key.verifying_key().to_cose_key_bytes().unwrap();
    let (token, _) = commands::obtain_token_with(&s, "hello", &digest, Some(&cnf)).unwrap();
    let keys = writ_attester::client::BrokerClient::new(&s.broker, None)
        .unwrap()
        .key_set()
        .unwrap();
    let state = GateState::new(gate_config(keys), gate::system_now()).unwrap();
    let follower = StatusFollower {
        brokers: vec![broker.url()],
        mode,
        poll_interval: Duration::from_secs(1),
        leeway_secs: 30,
    };
    let task = rt.spawn(follower.run(Arc::clone(&state)));
    while state.status_version().is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let router = app(Some(Arc::clone(&state)));
    let admitted = |router: &axum::Router| {
        let h = gate::request_headers(&token, &key, "POST", "/work", b"", now()).unwrap();
        let req = Request::post("/work")
            .header(&h[0].0, &h[0].1)
            .header(&h[1].0, &h[1].1)
            .body(Body::empty())
            .unwrap();
        rt.block_on(router.clone().oneshot(req)).unwrap().status() == 200
    };
    assert!(admitted(&router));
    Tpm::open(&swtpm.tcti())
        .unwrap()
        .pcr_extend(16, HashAlg::Sha256, &[0x5a; 32])
        .unwrap();
    let a = commands::attest(&s).unwrap();
    assert_eq!(a.host_status, "failed");
    let t0 = Instant::now();
    while admitted(&router) {
        std::thread::sleep(Duration::from_millis(2));
        assert!(t0.elapsed() < Duration::from_secs(30), "never refused");
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    task.abort();
    ms
}

fn status_list_scale() {
    use verifier_lib::status::{Bits, ListCheck, StatusArray, INVALID};
    use verifier_lib::token::StatusRef;
    const CAPACITY: usize = 1_048_576;
    const REVOKED: usize = 100_000;
    let key = SigningKey::generate().unwrap();
    let keys = KeySet::new(vec![key.verifying_key()]).unwrap();
    let uri = "https://writ.example/v1/status/lists/1";
    let mut idx = Vec::with_capacity(REVOKED);
    for _ in 0..REVOKED {
        let mut b = [0u8; 4];
        aws_lc_rs::rand::fill(&mut b).unwrap();
        idx.push(u64::from(u32::from_le_bytes(b)) % CAPACITY as u64);
    }
    let t = Instant::now();
    let mut statuses = StatusArray::new(Bits::One, CAPACITY);
    for i in &idx {
        statuses.set(*i, INVALID).unwrap();
    }
    let list = StatusList {
        uri: uri.into(),
        version: 1,
        issued_at: 1000,
        expires_at: 2000,
        ttl: Some(10),
        statuses,
    };
    let signed = list.sign(&key).unwrap();
    let sign_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut verify = Vec::new();
    let mut sha = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let l = verifier_lib::status::verify(&signed, &keys, ListCheck::at(1500, 0)).unwrap();
        verify.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(l.statuses.len(), CAPACITY);
        let t = Instant::now();
        std::hint::black_box(HashAlg::Sha256.digest(&signed));
        sha.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let t = Instant::now();
    let mut hits = 0;
    for i in &idx {
        let r = StatusRef {
            idx: *i,
            uri: uri.into(),
        };
        hits += usize::from(list.status_of(Some(&r)).unwrap() == INVALID);
    }
    let lookup_ns = t.elapsed().as_secs_f64() * 1e9 / REVOKED as f64;
    assert_eq!(hits, REVOKED);
    let (v, s) = (median(verify), median(sha));
    println!(
        "status list, {CAPACITY} entries, ~100k revoked: {} bytes ({:.3} B/entry); build+sign {:.1} ms; verify+inflate {:.2} ms = {:.1}x SHA-256 over the same bytes ({:.2} ms); lookup {:.0} ns",
        signed.len(),
        signed.len() as f64 / CAPACITY as f64,
        sign_ms,
        v,
        v / s,
        s,
        lookup_ns
    );
}

fn gate_overhead(rt: &tokio::runtime::Runtime) {
    let broker_key = SigningKey::generate().unwrap();
    let keys = KeySet::new(vec![broker_key.verifying_key()]).unwrap();
    let holder = SigningKey::generate().unwrap();
    let t = now();
    let claims = verifier_lib::token::Claims {
        iss: "writ-broker".into(),
        sub: "h".into(),
        aud: "hello".into(),
        exp: t + 600,
        nbf: t,
        iat: t,
        cti: vec![9; 16],
        eat_nonce: None,
        eat_profile: verifier_lib::token::PROFILE.into(),
        appraisal: verifier_lib::token::Appraisal {
            status: verifier_lib::token::EarStatus::Affirming,
            trust_vector: Default::default(),
            policy_id: "p".into(),
            verifier_id: "v".into(),
            submods: Default::default(),
        },
        workload_digest: None,
        cnf: Some(holder.verifying_key()),
        lineage: None,
        scope: vec![],
        audit_index: None,
        offline_ok: false,
        status: Some(verifier_lib::token::StatusRef {
            idx: 9,
            uri: "https://writ.example/v1/status/lists/1".into(),
        }),
    };
    let token = verifier_lib::token::mint(&claims, &broker_key).unwrap();
    let state = GateState::new(gate_config(keys), gate::system_now()).unwrap();
    let mut statuses = verifier_lib::status::StatusArray::new(verifier_lib::status::Bits::One, 64);
    statuses.set(1, verifier_lib::status::INVALID).unwrap();
    state.install(StatusList {
        uri: "https://writ.example/v1/status/lists/1".into(),
        version: 1,
        issued_at: t,
        expires_at: t + 600,
        ttl: Some(10),
        statuses,
    });
    let gated = app(Some(state));
    let plain = app(None);
    let n = 3000;
    let body = br#"{"job":1}"#;
    let proofs: Vec<[(String, String); 2]> = (0..n)
        .map(|_| gate::request_headers(&token, &holder, "POST", "/work", body, t).unwrap())
        .collect();
    let run = |router: &axum::Router, with: bool| {
        let t = Instant::now();
        for h in &proofs {
            let mut req = Request::post("/work");
            if with {
                req = req.header(&h[0].0, &h[0].1).header(&h[1].0, &h[1].1);
            }
            let resp = rt
                .block_on(
                    router
                        .clone()
                        .oneshot(req.body(Body::from(&body[..])).unwrap()),
                )
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    };
    let mut plain_us = Vec::new();
    let mut gated_us = Vec::new();
    for round in 0..3 {
        plain_us.push(run(&plain, false));
        if round == 0 {
            // Each proof is single-use: the gated run goes once per proof set.
            gated_us.push(run(&gated, true));
        }
    }
    let (p, g) = (median(plain_us), median(gated_us));
    println!(
        "gate: plain request {p:.1} µs, PoP-checked request {g:.1} µs ({:.0}x; token verify + status lookup + PoP verify + body buffering)",
        g / p
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    status_list_scale();
    gate_overhead(&rt);
    for (name, mode) in [
        ("SSE push", FollowMode::Stream),
        ("1 s polling", FollowMode::Poll),
    ] {
        let runs: Vec<f64> = (0..5).map(|_| revocation_latency(mode, &rt)).collect();
        println!(
            "failing attestation → gate refusal, {name}: median {:.0} ms (runs {:?})",
            median(runs.clone()),
            runs.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
    }
}
