//! Revocation across brokers on one PostgreSQL database: a token revoked
//! through broker A shows up in the Token Status List a gate follows on
//! broker B's stream, pushed by `LISTEN/NOTIFY` (B's own poll is set to a
//! minute, so only the notification can explain a quick arrival). The
//! delay is printed, not asserted (a generous timeout bounds the test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use swtpm_tests::broker::{Backend, BrokerOptions, TestBroker, OPERATOR_TOKEN};
use verifier_lib::pop::Window;
use verifier_lib::status::{INVALID, VALID};
use verifier_lib::token::{Expectations, KeySet, StatusRef, TokenVerifier};
use writ_broker::clock::Clock as _;
use writ_broker::store::audit::{AppraisalChange, Expect, NonceUse, StateChange};
use writ_broker::store::{AppraisalRecord, EpochPlan, HostRecord, HostStatus, TokenRecord};
use writ_gate::{FollowMode, GateConfig, GateState, StatusFollower};

const FLEET: &str = "https://fleet.example";
const HOST: &str = "host-1";

fn options() -> BrokerOptions {
    BrokerOptions {
        policy: "id = \"fleet-1\"\n".to_owned(),
        ek_roots_pem: Vec::new(),
        bundled_manufacturers: false,
    }
}

fn fleet_config(cfg: &mut writ_broker::config::Config) {
    cfg.status.public_base_url = Some(FLEET.into());
    cfg.status.poll_interval_ms = 60_000;
}

/// Record a trusted host and a token of it in status slot `slot`.
fn record_token(a: &TestBroker, cti: u8) -> StatusRef {
    let now = a.clock.now();
    let slot = a
        .block_on(a.store.allocate_status_slot(
            EpochPlan {
                capacity: 1_048_576,
                period_secs: 0,
            },
            now,
        ))
        .unwrap();
    a.block_on(a.audit.append(
        StateChange::Host(HostRecord {
            id: HOST.into(),
            status: HostStatus::Enrolled,
            ek_public: vec![1],
            ek_cert_digest: vec![2],
            ak_public: vec![3],
            ak_name: vec![4],
            enrolled_at: now - 100,
            last_attested_at: None,
            last_failure: None,
            policy_id: None,
        }),
        Vec::new(),
    ))
    .unwrap();
    let change = AppraisalChange {
        nonce: NonceUse {
            digest: vec![cti; 16],
            expires_at: now + 60,
            at: now,
        },
        expect: Expect {
            status: Some(HostStatus::Enrolled),
            clock: None,
        },
        appraisal: AppraisalRecord {
            host_id: HOST.into(),
            at: now,
            verdict: "affirming".into(),
            policy_id: "fleet-1".into(),
            policy_hash: "h".into(),
            evidence_digest: vec![0; 32],
            failures: "[]".into(),
        },
        status: Some(HostStatus::Trusted),
        status_reason: None,
        register: None,
        clock: None,
        clock_refused: None,
        token: Some(TokenRecord {
            cti: vec![cti; 16],
            host_id: HOST.into(),
            workload: "w".into(),
            workload_digest: vec![0; 32],
            iat: now,
            exp: now + 600,
            policy_id: "fleet-1".into(),
            token_digest: vec![0; 32],
            status: Some(slot),
            audit_index: None,
        }),
        ima_cursor: None,
    };
    a.block_on(
        a.audit
            .append(StateChange::Appraisal(Box::new(change)), Vec::new()),
    )
    .unwrap();
    StatusRef {
        idx: slot.idx,
        uri: format!("{FLEET}/v1/status/lists/{}", slot.epoch),
    }
}

fn key_set(b: &TestBroker) -> KeySet {
    let set = reqwest::blocking::get(format!("{}/v1/keys", b.url()))
        .unwrap()
        .bytes()
        .unwrap();
    KeySet::from_cose_key_set(&set).unwrap()
}

#[test]
fn a_revocation_through_a_reaches_a_gate_following_b() {
    let a = TestBroker::start_on_configured(Backend::Postgres, options(), fleet_config).unwrap();
    // B joins A's database with A's token key and its own checkpoint key
    // (docs/operations.md: what a fleet shares).
    let b = TestBroker::start_joining(&a, options(), fleet_config).unwrap();
    let token = record_token(&a, 7);

    // Both brokers serve the same statuses under the fleet's URI.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gate = GateState::new(
        GateConfig {
            verifier: TokenVerifier::new(key_set(&b), Expectations::new("writ-broker", "w")),
            pop_window: Window::default(),
            max_status_age_secs: 60,
            allow_offline: Default::default(),
            replay_capacity: 10,
            replay_capacity_per_key: 10,
            max_body_bytes: 1024,
        },
        writ_gate::system_now(),
    )
    .unwrap();
    let follower = StatusFollower {
        brokers: vec![b.url()],
        mode: FollowMode::Stream,
        poll_interval: Duration::from_secs(3600),
        leeway_secs: 5,
    };
    let task = rt.spawn(follower.run(Arc::clone(&gate)));
    let status = |gate: &GateState| {
        gate.held(&token.uri)
            .map(|l| l.status_of(Some(&token)).unwrap())
    };
    let t0 = Instant::now();
    while status(&gate) != Some(VALID) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "B's list never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Revoke through A.
    let resp = reqwest::blocking::Client::new()
        .post(format!(
            "{}/v1/tokens/{}/revoke",
            a.url(),
            hex::encode([7u8; 16])
        ))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"reason":"fleet test"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());
    let revoked_at = Instant::now();
    while status(&gate) != Some(INVALID) {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(30),
            "the revocation through A never reached B's stream"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let delay = revoked_at.elapsed();
    println!(
        "revocation through broker A seen on broker B's stream after {:.1} ms",
        delay.as_secs_f64() * 1000.0
    );
    // B's own poll (60 s) cannot have delivered it.
    assert!(delay < Duration::from_secs(60), "{delay:?}");
    task.abort();
}
