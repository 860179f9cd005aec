//! The load generator against a real broker (in-process, SQLite, audit
//! log on, the production accept loop and its per-source limits): hosts
//! enroll, re-attest and obtain key-bound tokens, every exchange succeeds
//! and every token verifies; the broker records each host's appraisals
//! and each token. And the binary refuses a target that is not loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use swtpm_tests::broker::{BrokerOptions, TestBroker};
use writ_loadgen::exchange::{unix_now, Broker};
use writ_loadgen::fleet::{policy_toml, Fleet};
use writ_loadgen::run::{run, Mode, RunConfig};
use writ_loadgen::stats::Operation;
use writ_loadgen::target::Target;

const HOSTS: usize = 16;
const SOURCES: usize = 4;

/// A fleet of `hosts` in a fresh state directory, a broker trusting its CA
/// and enforcing its policy, the broker's target and `sources` addresses,
/// and a runtime for the load generator.
struct Setup {
    state: tempfile::TempDir,
    fleet: Arc<Fleet>,
    broker: TestBroker,
    target: Target,
    sources: Vec<std::net::IpAddr>,
    rt: tokio::runtime::Runtime,
}

fn setup(hosts: usize, sources: usize) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let fleet = Arc::new(Fleet::open(state.path(), hosts, sources, unix_now()).unwrap());
    let broker = TestBroker::start(BrokerOptions {
        policy: policy_toml(&fleet.log),
        ek_roots_pem: fleet.ca.cert_pem().into_bytes(),
        bundled_manufacturers: false,
    })
    .unwrap();
    let target = Target::parse(&broker.url()).unwrap();
    let sources = target.sources(sources).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Setup {
        state,
        fleet,
        broker,
        target,
        sources,
        rt,
    }
}

#[test]
fn mixed_load_against_a_real_broker_succeeds_and_every_token_verifies() {
    let Setup {
        state,
        fleet,
        broker,
        target,
        sources,
        rt,
    } = setup(HOSTS, SOURCES);
    let cfg = RunConfig {
        mode: Mode::Mixed,
        duration: Duration::from_secs(4),
        interval: Duration::from_millis(1500),
        jitter: 0.2,
        rate: 10.0,
        concurrency: 4,
        max_in_flight: 64,
        broker_pid: Some(std::process::id()),
    };
    let phases = rt.block_on(async {
        let client = Arc::new(
            Broker::connect(target, &sources, "writ-broker")
                .await
                .unwrap(),
        );
        assert_eq!(fleet.load_enrolled(&client.kid), 0);
        let phases = run(Arc::clone(&fleet), Arc::clone(&client), &cfg)
            .await
            .unwrap();
        fleet.save_enrolled(&client.kid).unwrap();
        // A second run finds every host enrolled: no prepare phase.
        let again = Fleet::open(state.path(), HOSTS, SOURCES, unix_now()).unwrap();
        assert_eq!(again.load_enrolled(&client.kid), HOSTS);
        phases
    });
    let names: Vec<&str> = phases.iter().map(|p| p.name).collect();
    assert_eq!(names, ["prepare", "load"]);
    for p in &phases {
        assert_eq!(p.errors(), 0, "{p:#?}");
        assert_eq!(p.unfinished, 0, "{p:#?}");
        assert!(p.broker_cpu_secs.is_some());
    }
    let enrolled = &phases[0].operations;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0].ok, HOSTS as u64);
    let load = &phases[1].operations;
    let op = |op| load.iter().find(|o| o.operation == op).unwrap();
    // Every due exchange either succeeded or was not sent because its host
    // was still busy (a loaded machine): none failed.
    for o in load {
        assert_eq!(o.ok + o.skipped, o.offered, "{o:#?}");
        assert!(o.ok > 0, "{o:#?}");
    }
    assert!(op(Operation::Attest).ok >= HOSTS as u64, "{load:#?}");
    assert!(op(Operation::Token).ok >= 20, "{load:#?}");
    // The broker recorded every host as trusted or, if all its exchanges
    // were skipped, still enrolled: none failed.
    let mut trusted = 0;
    for host in &fleet.hosts {
        let id = host.host_id().unwrap().to_owned();
        let record = broker.block_on(broker.store.host(&id)).unwrap().unwrap();
        match record.status.as_str() {
            "trusted" => trusted += 1,
            "enrolled" => {}
            other => panic!("{id}: {other}"),
        }
    }
    assert!(trusted >= HOSTS / 2, "{trusted} of {HOSTS} trusted");
}

#[test]
fn signed_requests_against_a_real_broker_get_tokens_that_verify() {
    const SIGNED_HOSTS: usize = 6;
    // The broker and the state directory live until the end of the test.
    let Setup {
        state: _state,
        fleet,
        broker: _broker,
        target,
        sources,
        rt,
    } = setup(SIGNED_HOSTS, 2);
    let cfg = RunConfig {
        mode: Mode::Signed,
        duration: Duration::from_secs(2),
        interval: Duration::from_secs(60),
        jitter: 0.0,
        rate: 10.0,
        concurrency: 3,
        max_in_flight: 16,
        broker_pid: None,
    };
    let phases = rt.block_on(async {
        let client = Arc::new(
            Broker::connect(target, &sources, "writ-broker")
                .await
                .unwrap(),
        );
        run(Arc::clone(&fleet), client, &cfg).await.unwrap()
    });
    let names: Vec<&str> = phases.iter().map(|p| p.name).collect();
    assert_eq!(names, ["prepare", "register", "load"]);
    for p in &phases {
        assert_eq!(p.errors(), 0, "{p:#?}");
    }
    let register = &phases[1].operations;
    for op in [Operation::Attest, Operation::RegisterKey] {
        let o = register.iter().find(|o| o.operation == op).unwrap();
        assert_eq!(o.ok, SIGNED_HOSTS as u64, "{o:#?}");
    }
    let signed = &phases[2].operations;
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0].operation, Operation::SignedToken);
    assert!(signed[0].ok >= 10, "{signed:#?}");
    assert!(fleet.hosts.iter().all(|h| h.request_key().is_some()));
}

#[test]
fn the_binary_refuses_a_target_that_is_not_loopback() {
    let state = tempfile::tempdir().unwrap();
    for url in ["http://10.1.2.3:8443", "http://192.168.0.10:80"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_writ-loadgen"))
            .args(["tokens", "--broker", url, "--hosts", "1", "--state-dir"])
            .arg(state.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a loopback address"), "{err}");
    }
    // Refused before any identity was made.
    assert!(!state.path().join("tpms.bin").exists());
}

#[test]
fn ceiling_grants_every_prepared_request_and_reports_a_rate() {
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_writ-loadgen"))
        .args([
            "ceiling",
            "--duration-secs",
            "1",
            "--threads",
            "1",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rate: f64 = text
        .split("s): ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {text}"));
    assert!(rate > 0.0, "{text}");
}
