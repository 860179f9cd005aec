//! Continuous governance end to end on swtpm: re-attestation failures,
//! reboots, clock rollback, staleness and operator revocation all end in a
//! revoked token that the relying-party gate refuses; proofs of possession,
//! token lineage and the workload socket refuse what they must, with typed
//! reasons and no token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use support::{extend_log, fresh_pcrs, reproducible_logs, Host, Workload, POLICY_PCRS};
use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use verifier_lib::api::governance::{DeriveRequest, DeriveResponse, RevocationResponse};
use verifier_lib::api::HostView;
use verifier_lib::crypto::HashAlg;
use verifier_lib::host_clock::ClockState;
use verifier_lib::policy::public::PublicFailure as Failure;
use verifier_lib::pop::Window;
use verifier_lib::token::{
    Audience, Expectations, KeySet, SigningKey, TokenVerifier, VerifiedToken,
};
use writ_attester::client::ClientError;
use writ_attester::commands::{self, CommandError};
use writ_attester::daemon::{AllowedCaller, AllowedWorkload, Daemon, DaemonConfig};
use writ_attester::tpm::AkAlg;
use writ_attester::workload_api::{self, WorkloadApiError, WorkloadRequest};
use writ_gate::{FollowMode, GateConfig, GateLayer, GateState, StatusFollower};

fn broker_with(
    pcrs: &BTreeMap<u8, Vec<u8>>,
    workloads: &[(&str, [u8; 32])],
    roots: Vec<u8>,
    tweak: impl FnOnce(&mut writ_broker::config::Config),
) -> TestBroker {
    TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy: policy_toml("gov-1", pcrs, workloads),
            ek_roots_pem: roots,
            bundled_manufacturers: false,
        },
        tweak,
    )
    .unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn expectations(aud: &str) -> Expectations {
    Expectations {
        issuer: "writ-broker".into(),
        audience: Audience::Exactly(aud.into()),
        leeway_secs: 30,
        max_lifetime_secs: 3600,
        require_workload_digest: false,
    }
}

/// An enrolled, trusted host and a key-bound token for `workload`.
#[derive(Debug)]
struct Bound {
    key: SigningKey,
    token: Vec<u8>,
    verified: VerifiedToken,
}

fn bound_token(host: &Host, workload: &str, digest: &[u8; 32]) -> Result<Bound, CommandError> {
    let key = SigningKey::generate().unwrap();
    let cnf = key.verifying_key().to_cose_key_bytes().unwrap();
    let (token, verified) =
        commands::obtain_token_with(&host.settings, workload, digest, Some(&cnf))?;
    Ok(Bound {
        key,
        token,
        verified,
    })
}

fn refused_code(e: &CommandError) -> String {
    match e {
        CommandError::Broker(ClientError::Refused { code, .. }) => code.clone(),
        other => panic!("expected a broker refusal, got {other:?}"),
    }
}

fn host_view(host: &Host) -> HostView {
    host.client()
        .with_operator_token(swtpm_tests::broker::OPERATOR_TOKEN)
        .get(&format!("/v1/hosts/{}", host.state().host_id))
        .unwrap()
}

fn keys(host: &Host) -> KeySet {
    host.client().key_set().unwrap()
}

/// POST with a JSON body and optional presented token + proof.
fn post_raw(url: &str, body: &[u8], headers: &[(String, String)]) -> (u16, serde_json::Value) {
    let mut req = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let v = resp.json().unwrap_or(serde_json::Value::Null);
    (status, v)
}

/// POST to an operator endpoint, as the test broker's operator.
fn post_operator(url: &str, body: &[u8]) -> (u16, serde_json::Value) {
    post_raw(
        url,
        body,
        &[(
            "authorization".to_owned(),
            format!("Bearer {}", swtpm_tests::broker::OPERATOR_TOKEN),
        )],
    )
}

fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The current epoch's list (every token of these tests is in it).
fn status_list(host: &Host) -> verifier_lib::status::StatusList {
    let bytes = host.client().get_bytes("/v1/status").unwrap();
    verifier_lib::status::verify(
        &bytes,
        &keys(host),
        verifier_lib::status::ListCheck::at(now(), 30),
    )
    .unwrap()
}

/// Whether a list revokes a token (by the token's own status claim).
trait Revokes {
    fn revokes(&self, claims: &verifier_lib::token::Claims) -> bool;
}

impl Revokes for verifier_lib::status::StatusList {
    fn revokes(&self, claims: &verifier_lib::token::Claims) -> bool {
        self.status_of(claims.status.as_ref()).unwrap() != verifier_lib::status::VALID
    }
}

/// A relying party: an axum app behind the gate, on a loopback port.
struct RelyingParty {
    url: String,
    state: Arc<GateState>,
    rt: tokio::runtime::Runtime,
}

fn relying_party(config: GateConfig, now_fn: writ_gate::Now) -> RelyingParty {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let state = GateState::new(config, now_fn).unwrap();
    let app = axum::Router::new()
        .route(
            "/work",
            axum::routing::post(
                |axum::Extension(t): axum::Extension<VerifiedToken>| async move {
                    format!("hello {}", t.claims.aud)
                },
            ),
        )
        .layer(GateLayer::new(Arc::clone(&state)));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    RelyingParty {
        url: format!("http://{addr}"),
        state,
        rt,
    }
}

fn gate_config(keys: KeySet, aud: &str, max_status_age_secs: i64) -> GateConfig {
    GateConfig {
        verifier: TokenVerifier::new(keys, expectations(aud)),
        pop_window: Window::default(),
        max_status_age_secs,
        allow_offline: Default::default(),
        replay_capacity: 10_000,
        replay_capacity_per_key: 10_000,
        max_body_bytes: 1 << 20,
    }
}

impl RelyingParty {
    fn follow(&self, broker: &str, mode: FollowMode, poll: Duration) {
        let f = StatusFollower {
            brokers: vec![broker.to_owned()],
            mode,
            poll_interval: poll,
            leeway_secs: 30,
        };
        let s = Arc::clone(&self.state);
        self.rt.spawn(f.run(s));
    }

    /// POST /work with a fresh proof by `key` (or no proof).
    fn call(&self, token: &[u8], key: Option<&SigningKey>, at: i64) -> (u16, serde_json::Value) {
        let body = br#"{"job":1}"#;
        let headers = match key {
            Some(k) => writ_gate::request_headers(token, k, "POST", "/work", body, at)
                .unwrap()
                .to_vec(),
            None => vec![(
                "authorization".to_owned(),
                format!("Writ {}", URL_SAFE_NO_PAD.encode(token)),
            )],
        };
        post_raw(&format!("{}/work", self.url), body, &headers)
    }

    fn wait_for_status(&self) {
        for _ in 0..200 {
            if self.state.status_version().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gate never received a status list");
    }
}

fn trusted_host(broker: &TestBroker) -> Host {
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.host_status, "trusted", "{a:?}");
    host
}

#[test]
fn failing_reattestation_revokes_tokens_and_the_gate_refuses() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("gov");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |c| {
        c.status.poll_interval_ms = 100;
    });
    let host = trusted_host(&broker);
    let b = bound_token(&host, "hello", &w.digest).unwrap();
    let rp = relying_party(
        gate_config(keys(&host), "hello", 30),
        writ_gate::system_now(),
    );
    rp.follow(&broker.url(), FollowMode::Stream, Duration::from_secs(30));
    rp.wait_for_status();
    let (status, body) = rp.call(&b.token, Some(&b.key), now());
    assert_eq!(status, 200, "{body}");

    // PCR 16 changes: the next re-attestation fails and revokes the token.
    host.extend_pcr16();
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.host_status, "failed");
    assert!(status_list(&host).revokes(&b.verified.claims));
    let state = broker
        .block_on(broker.store.token_state(&b.verified.claims.cti))
        .unwrap()
        .unwrap();
    assert!(state.revoked);

    // The gate learns it from the pushed status list and refuses.
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..200 {
        last = rp.call(&b.token, Some(&b.key), now());
        if last.0 != 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last.0, 403, "{}", last.1);
    assert_eq!(error_code(&last.1), "token_revoked");
    // And the failed host gets no new token.
    let e = bound_token(&host, "hello", &w.digest).unwrap_err();
    assert_eq!(refused_code(&e), "denied");
}

#[test]
fn reboot_is_accepted_and_recorded() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_with(&pcrs, &[], roots, |_| {});
    let mut host = trusted_host(&broker);
    let id = host.state().host_id;
    let before = broker
        .block_on(broker.store.host_clock(&id))
        .unwrap()
        .unwrap();
    host.swtpm.restart().unwrap();
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.verdict, "affirming", "{a:?}");
    assert_eq!(a.host_status, "trusted");
    let after = broker
        .block_on(broker.store.host_clock(&id))
        .unwrap()
        .unwrap();
    assert!(
        after.reset_count > before.reset_count,
        "{before:?} -> {after:?}"
    );
    let events = broker
        .block_on(
            broker
                .store
                .host_events(&id, writ_broker::store::HostEvents::All, 1000),
        )
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "rebooted"), "{events:?}");
}

/// With `hosts.boot_log_required`, a reboot (swtpm restart: TPM Reset) is
/// accepted only with a boot log of the new boot — a real firmware event log
/// whose replay gives the quoted PCRs — and fails the host without one.
#[test]
fn reboot_needs_a_verified_boot_log_when_required() {
    let (_, roots) = fresh_pcrs();
    let (name, bytes) = reproducible_logs().into_iter().next().unwrap();
    let log = verifier_lib::eventlog::EventLog::parse(&bytes).unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("binary_bios_measurements");
    std::fs::write(&log_path, &bytes).unwrap();

    // The policy pins the PCRs a fresh TPM has after this boot's log, and
    // every PCR the log measures, so the quote covers them all.
    let probe = Host::new("http://127.0.0.1:9");
    extend_log(&probe, &log);
    let mut quoted: Vec<u8> = POLICY_PCRS.to_vec();
    quoted.extend(log.replay().measured_pcrs());
    quoted.sort_unstable();
    quoted.dedup();
    let pcrs = probe
        .tpm()
        .pcr_read(&[(HashAlg::Sha256, quoted)])
        .unwrap()
        .remove(&HashAlg::Sha256)
        .unwrap();
    drop(probe);
    let broker = broker_with(&pcrs, &[], roots, |c| c.hosts.boot_log_required = true);

    // Host A sends its boot log with every quote.
    let mut a = Host::new(&broker.url());
    a.settings.logs = writ_attester::logs::LogSources {
        eventlog: Some(log_path.clone()),
        ima: None,
    };
    extend_log(&a, &log);
    commands::enroll(&a.settings, AkAlg::EccP256).unwrap();
    let first = commands::attest(&a.settings).unwrap();
    assert_eq!(first.verdict, "affirming", "{name}: {first:?}");
    a.swtpm.restart().unwrap();
    extend_log(&a, &log);
    let after = commands::attest(&a.settings).unwrap();
    assert_eq!(after.verdict, "affirming", "{name}: {after:?}");
    assert_eq!(after.host_status, "trusted");
    let id = a.state().host_id;
    let events = broker
        .block_on(
            broker
                .store
                .host_events(&id, writ_broker::store::HostEvents::All, 1000),
        )
        .unwrap();
    let reboot = events.iter().find(|e| e.kind == "rebooted").unwrap();
    assert!(reboot.detail.ends_with("boot log: new"), "{reboot:?}");

    // Host B reaches the same PCRs but sends no log: its reboot fails it.
    let mut b = Host::distinct(&broker.url());
    extend_log(&b, &log);
    commands::enroll(&b.settings, AkAlg::EccP256).unwrap();
    assert_eq!(commands::attest(&b.settings).unwrap().verdict, "affirming");
    b.swtpm.restart().unwrap();
    extend_log(&b, &log);
    let failed = commands::attest(&b.settings).unwrap();
    assert_eq!(failed.verdict, "contraindicated");
    assert_eq!(failed.host_status, "failed");
    assert!(
        failed.failures.iter().any(|f| matches!(
            f,
            Failure::RebootWithoutBootLog {
                previous_reset_count,
                current_reset_count,
            } if current_reset_count > previous_reset_count
        )),
        "{failed:?}"
    );
    // The baseline did not move: the host stays failed until it shows a log.
    let again = commands::attest(&b.settings).unwrap();
    assert_eq!(again.host_status, "failed", "{again:?}");
}

#[test]
fn clock_or_counter_rollback_fails_the_host() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("clock");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |_| {});
    let host = trusted_host(&broker);
    let id = host.state().host_id;
    let b = bound_token(&host, "hello", &w.digest).unwrap();
    let real = broker
        .block_on(broker.store.host_clock(&id))
        .unwrap()
        .unwrap();
    // The broker has seen this TPM further ahead than it now claims to be.
    let ahead = ClockState {
        clock: real.clock + 10_000_000,
        ..real
    };
    broker
        .block_on(broker.store.set_host_clock(&id, Some(ahead)))
        .unwrap();
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.verdict, "contraindicated");
    assert_eq!(a.host_status, "failed");
    assert!(
        a.failures
            .iter()
            .any(|f| matches!(f, Failure::TpmClockRollback { .. })),
        "{:?}",
        a.failures
    );
    assert!(status_list(&host).revokes(&b.verified.claims));
    let e = bound_token(&host, "hello", &w.digest).unwrap_err();
    assert_eq!(refused_code(&e), "denied");

    // A reset counter that went down is a rollback too.
    let higher = ClockState {
        reset_count: real.reset_count + 5,
        ..real
    };
    broker
        .block_on(broker.store.set_host_clock(&id, Some(higher)))
        .unwrap();
    let a = commands::attest(&host.settings).unwrap();
    assert!(
        a.failures.iter().any(
            |f| matches!(f, Failure::TpmCounterRollback { counter, .. } if counter == "reset_count")
        ),
        "{:?}",
        a.failures
    );
    assert_eq!(host_view(&host).status, "failed");
}

#[test]
fn stale_host_gets_no_tokens() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("stale");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |c| {
        c.hosts.attestation_interval_secs = 2;
        c.hosts.stale_after_intervals = 3;
    });
    let host = trusted_host(&broker);
    let b = bound_token(&host, "hello", &w.digest).unwrap();
    broker.clock.advance(20);
    let mut status = String::new();
    for _ in 0..100 {
        status = host_view(&host).status;
        if status == "stale" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status, "stale");
    assert!(status_list(&host).revokes(&b.verified.claims));
    // No derived token from a stale host's token.
    let child = SigningKey::generate().unwrap();
    let (code, body) = derive(&broker, &b.token, &b.key, &child, &["read"], None);
    assert_eq!(code, 403, "{body}");
    assert_eq!(error_code(&body), "parent_revoked");
    // A fresh passing appraisal makes it trusted again.
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.host_status, "trusted");
}

#[test]
fn operator_revoke_and_reinstate() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("op");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |_| {});
    let host = trusted_host(&broker);
    let id = host.state().host_id;
    let b1 = bound_token(&host, "hello", &w.digest).unwrap();
    let b2 = bound_token(&host, "hello", &w.digest).unwrap();

    // One token.
    let url = format!(
        "{}/v1/tokens/{}/revoke",
        broker.url(),
        hex::encode(&b1.verified.claims.cti)
    );
    let (code, body) = post_operator(&url, br#"{"reason":"leaked"}"#);
    assert_eq!(code, 200, "{body}");
    let r: RevocationResponse = serde_json::from_value(body).unwrap();
    assert_eq!(r.revoked_tokens, 1);
    let list = status_list(&host);
    assert!(list.revokes(&b1.verified.claims));
    assert!(!list.revokes(&b2.verified.claims));
    assert_eq!(list.version, r.status_version);

    // The host: all its tokens, and no more attestation.
    let (code, body) = post_operator(&format!("{}/v1/hosts/{id}/revoke", broker.url()), b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["revocation"]["revoked_tokens"], 1);
    assert!(status_list(&host).revokes(&b2.verified.claims));
    let e = commands::attest(&host.settings).unwrap_err();
    assert_eq!(refused_code(&e), "host_revoked");
    let e = bound_token(&host, "hello", &w.digest).unwrap_err();
    assert_eq!(refused_code(&e), "host_revoked");

    // Reinstate: enrolled, not trusted, until a passing appraisal.
    let (code, body) = post_operator(&format!("{}/v1/hosts/{id}/reinstate", broker.url()), b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(host_view(&host).status, "enrolled");
    let (code, body) = post_operator(&format!("{}/v1/hosts/{id}/reinstate", broker.url()), b"");
    assert_eq!(code, 409);
    assert_eq!(error_code(&body), "host_not_revoked");
    assert_eq!(
        commands::attest(&host.settings).unwrap().host_status,
        "trusted"
    );

    // A workload: every token of it.
    let b3 = bound_token(&host, "hello", &w.digest).unwrap();
    let (code, body) = post_operator(&format!("{}/v1/workloads/hello/revoke", broker.url()), b"");
    assert_eq!(code, 200, "{body}");
    assert!(body["revoked_tokens"].as_u64().unwrap() >= 1);
    assert!(status_list(&host).revokes(&b3.verified.claims));
    // Unknown token id.
    let (code, body) = post_operator(
        &format!("{}/v1/tokens/{}/revoke", broker.url(), "00".repeat(16)),
        b"",
    );
    assert_eq!(code, 404);
    assert_eq!(error_code(&body), "unknown_token");

    // Every one of these decisions is in the signed audit log, in order,
    // with the operator who took it; the refused ones (reinstating a host
    // that is not revoked, revoking an unknown token) are not.
    let all = audit_decisions(&broker);
    let by_operator: Vec<&str> = all
        .iter()
        .filter(|d| d["kind"] == "operator_action" && d["who"] == "test-operator")
        .map(|d| d["what"].as_str().unwrap())
        .collect();
    assert_eq!(by_operator.len(), 4, "{by_operator:?}");
    assert!(
        by_operator[1].starts_with("revoke host "),
        "{by_operator:?}"
    );
    let decisions: Vec<serde_json::Value> = all
        .into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("token_revoked" | "host_revoked" | "host_state_changed" | "workload_revoked")
            )
        })
        .collect();
    let summary: Vec<(String, String)> = decisions
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_owned();
            let detail = match kind.as_str() {
                "token_revoked" => format!("{} {}", d["cti"].as_str().unwrap(), d["reason"]),
                "host_state_changed" => format!("{}->{}", d["from"], d["to"]),
                "host_revoked" => d["host"].as_str().unwrap().to_owned(),
                _ => d["workload"].as_str().unwrap().to_owned(),
            };
            (kind, detail)
        })
        .collect();
    let s = |a: &str, b: String| (a.to_owned(), b);
    assert_eq!(
        summary,
        vec![
            s("host_state_changed", "\"enrolled\"->\"trusted\"".into()),
            s(
                "token_revoked",
                format!("{} \"leaked\"", hex::encode(&b1.verified.claims.cti))
            ),
            s("host_revoked", id.clone()),
            s("host_state_changed", "\"revoked\"->\"enrolled\"".into()),
            s("host_state_changed", "\"enrolled\"->\"trusted\"".into()),
            s("workload_revoked", "hello".into()),
        ]
    );
}

/// The decoded decisions of the broker's whole audit log, in order (leaf
/// contents are for operators).
fn audit_decisions(broker: &TestBroker) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    loop {
        let url = format!("{}/v1/audit/entries?start={}", broker.url(), out.len());
        let page: serde_json::Value = reqwest::blocking::Client::new()
            .get(url)
            .bearer_auth(swtpm_tests::broker::OPERATOR_TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty() || out.len() as u64 == page["tree_size"].as_u64().unwrap());
        out.extend(entries.iter().map(|e| e["decoded"]["decision"].clone()));
        if out.len() as u64 >= page["tree_size"].as_u64().unwrap() {
            return out;
        }
    }
}

fn derive(
    broker: &TestBroker,
    parent: &[u8],
    parent_key: &SigningKey,
    child_key: &SigningKey,
    scope: &[&str],
    aud: Option<&str>,
) -> (u16, serde_json::Value) {
    let body = serde_json::to_vec(&DeriveRequest {
        aud: aud.map(str::to_owned),
        scope: scope.iter().map(|s| s.to_string()).collect(),
        lifetime_secs: Some(100_000),
        cnf: child_key.verifying_key().to_cose_key_bytes().unwrap(),
    })
    .unwrap();
    let headers = writ_gate::request_headers(
        parent,
        parent_key,
        "POST",
        "/v1/tokens/derive",
        &body,
        now(),
    )
    .unwrap();
    post_raw(
        &format!("{}/v1/tokens/derive", broker.url()),
        &body,
        &headers,
    )
}

#[test]
fn lineage_narrows_and_revocation_cascades() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("lineage");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |_| {});
    let host = trusted_host(&broker);
    let root = bound_token(&host, "hello", &w.digest).unwrap();

    let k1 = SigningKey::generate().unwrap();
    let (code, body) = derive(
        &broker,
        &root.token,
        &root.key,
        &k1,
        &["read", "write"],
        None,
    );
    assert_eq!(code, 200, "{body}");
    let child: DeriveResponse = serde_json::from_value(body).unwrap();
    assert_eq!(child.depth, 1);
    assert!(
        child.expires_at <= root.verified.claims.exp,
        "child outlives parent"
    );

    let k2 = SigningKey::generate().unwrap();
    let (code, body) = derive(
        &broker,
        &child.token,
        &k1,
        &k2,
        &["read"],
        Some("hello/reports"),
    );
    assert_eq!(code, 200, "{body}");
    let grandchild: DeriveResponse = serde_json::from_value(body).unwrap();
    let v = TokenVerifier::new(keys(&host), expectations("hello/reports"));
    let chain = verifier_lib::lineage::verify_lineage(
        &[&root.token, &child.token, &grandchild.token],
        &v,
        now(),
    )
    .unwrap();
    assert_eq!(chain[2].claims.scope, vec!["read".to_string()]);

    // Wider than the parent: refused, nothing minted.
    let before = broker.block_on(broker.store.counts()).unwrap().tokens;
    let k3 = SigningKey::generate().unwrap();
    let (code, body) = derive(&broker, &child.token, &k1, &k3, &["read", "admin"], None);
    assert_eq!(code, 403, "{body}");
    assert_eq!(error_code(&body), "lineage_wider_than_parent");
    let (code, body) = derive(&broker, &child.token, &k1, &k3, &["read"], Some("other"));
    assert_eq!(code, 403, "{body}");
    assert_eq!(error_code(&body), "lineage_wider_than_parent");
    // Proof by a key other than the parent's cnf key.
    let (code, body) = derive(&broker, &child.token, &k3, &k3, &["read"], None);
    assert_eq!(code, 401, "{body}");
    assert_eq!(error_code(&body), "pop_bad_signature");
    assert_eq!(
        broker.block_on(broker.store.counts()).unwrap().tokens,
        before
    );

    // Revoking the root revokes every descendant; the child can derive no more.
    let url = format!(
        "{}/v1/tokens/{}/revoke",
        broker.url(),
        hex::encode(&root.verified.claims.cti)
    );
    let (code, body) = post_operator(&url, b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["revoked_tokens"], 3);
    let list = status_list(&host);
    let claims_of = |t: &[u8]| verifier_lib::token::decode_unverified(t).unwrap().1;
    assert!(list.revokes(&claims_of(&child.token)) && list.revokes(&claims_of(&grandchild.token)));
    let (code, body) = derive(&broker, &child.token, &k1, &k3, &["read"], None);
    assert_eq!(code, 403, "{body}");
    assert_eq!(error_code(&body), "parent_revoked");
}

#[test]
fn gate_refuses_missing_foreign_and_replayed_proofs() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("pop");
    let broker = broker_with(
        &pcrs,
        &[("hello", w.digest), ("other", w.digest)],
        roots,
        |_| {},
    );
    let host = trusted_host(&broker);
    let b = bound_token(&host, "hello", &w.digest).unwrap();
    let rp = relying_party(
        gate_config(keys(&host), "hello", 30),
        writ_gate::system_now(),
    );
    rp.follow(&broker.url(), FollowMode::Poll, Duration::from_secs(1));
    rp.wait_for_status();

    let (code, body) = rp.call(&b.token, None, now());
    assert_eq!((code, error_code(&body)), (401, "pop_missing"), "{body}");
    let stranger = SigningKey::generate().unwrap();
    let (code, body) = rp.call(&b.token, Some(&stranger), now());
    assert_eq!(
        (code, error_code(&body)),
        (401, "pop_bad_signature"),
        "{body}"
    );
    // A valid request, then the very same headers again.
    let payload = br#"{"job":1}"#;
    let headers =
        writ_gate::request_headers(&b.token, &b.key, "POST", "/work", payload, now()).unwrap();
    let (code, body) = post_raw(&format!("{}/work", rp.url), payload, &headers);
    assert_eq!(code, 200, "{body}");
    let (code, body) = post_raw(&format!("{}/work", rp.url), payload, &headers);
    assert_eq!((code, error_code(&body)), (401, "pop_replayed"), "{body}");
    // The proof is for another body.
    let (code, body) = post_raw(&format!("{}/work", rp.url), br#"{"job":2}"#, &headers);
    assert_eq!(
        (code, error_code(&body)),
        (401, "pop_wrong_request"),
        "{body}"
    );
    // No token at all; a token for another audience; a token without cnf.
    let (code, body) = post_raw(&format!("{}/work", rp.url), payload, &[]);
    assert_eq!((code, error_code(&body)), (401, "token_missing"), "{body}");
    let o = bound_token(&host, "other", &w.digest).unwrap();
    let (code, body) = rp.call(&o.token, Some(&o.key), now());
    assert_eq!(
        (code, error_code(&body)),
        (403, "token_wrong_audience"),
        "{body}"
    );
    let (plain, _) = commands::obtain_token_with(&host.settings, "hello", &w.digest, None).unwrap();
    let (code, body) = rp.call(&plain, Some(&b.key), now());
    assert_eq!(
        (code, error_code(&body)),
        (401, "pop_token_not_key_bound"),
        "{body}"
    );
}

#[test]
fn status_list_older_than_max_staleness_denies() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("offline");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |_| {});
    let host = trusted_host(&broker);
    let b = bound_token(&host, "hello", &w.digest).unwrap();
    let offset = Arc::new(AtomicI64::new(0));
    let o = Arc::clone(&offset);
    let clock: writ_gate::Now = Arc::new(move || now() + o.load(Ordering::SeqCst));
    let broker_keys = keys(&host);
    let mut cfg = gate_config(broker_keys.clone(), "hello", 10);
    let rp = relying_party(cfg.clone(), Arc::clone(&clock));
    rp.follow(&broker.url(), FollowMode::Poll, Duration::from_secs(3600));
    rp.wait_for_status();
    assert_eq!(rp.call(&b.token, Some(&b.key), clock()).0, 200);
    // The broker becomes unreachable and time passes beyond the staleness bound.
    drop(broker);
    offset.store(11, Ordering::SeqCst);
    let (code, body) = rp.call(&b.token, Some(&b.key), clock());
    assert_eq!(
        (code, error_code(&body)),
        (403, "status_unavailable"),
        "{body}"
    );
    // A workload allowed offline is still admitted (with its proof checked).
    cfg.allow_offline.insert("hello".into());
    let offline = GateState::new(cfg, Arc::clone(&clock)).unwrap();
    let headers =
        writ_gate::request_headers(&b.token, &b.key, "POST", "/work", b"", clock()).unwrap();
    let t = offline
        .admit(
            "POST",
            "/work",
            Some(&headers[0].1),
            Some(&headers[1].1),
            b"",
        )
        .unwrap();
    assert_eq!(t.claims.aud, "hello");
    // Without any list, the non-offline gate refuses.
    let never = GateState::new(gate_config(broker_keys, "hello", 10), clock).unwrap();
    assert_eq!(
        never
            .admit(
                "POST",
                "/work",
                Some(&headers[0].1),
                Some(&headers[1].1),
                b""
            )
            .unwrap_err()
            .code(),
        "status_unavailable"
    );
}

/// The broker's policy can allow a workload's tokens offline
/// (`allow_offline = true` → `writ.offline-ok`): a gate without any status
/// list admits them, and still refuses every other workload's.
#[test]
fn the_policy_can_allow_a_workload_offline() {
    let (pcrs, roots) = fresh_pcrs();
    let (w, batch) = (Workload::new("online"), Workload::new("batch"));
    // The last workload of the generated policy gets `allow_offline`.
    let policy = policy_toml(
        "gov-offline",
        &pcrs,
        &[("hello", w.digest), ("batch", batch.digest)],
    ) + "allow_offline = true\n";
    let broker = TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy,
            ek_roots_pem: roots,
            bundled_manufacturers: false,
        },
        |_| {},
    )
    .unwrap();
    let host = trusted_host(&broker);
    let online = bound_token(&host, "hello", &w.digest).unwrap();
    let offline = bound_token(&host, "batch", &batch.digest).unwrap();
    assert!(!online.verified.claims.offline_ok);
    assert!(offline.verified.claims.offline_ok);
    let t = now();
    let admit = |b: &Bound, aud: &str| {
        // A gate that never got a status list, with no offline exceptions.
        let gate = GateState::new(gate_config(keys(&host), aud, 10), Arc::new(now)).unwrap();
        let h = writ_gate::request_headers(&b.token, &b.key, "POST", "/work", b"", t).unwrap();
        gate.admit("POST", "/work", Some(&h[0].1), Some(&h[1].1), b"")
            .map(|v| v.claims.aud)
            .map_err(|e| e.code())
    };
    assert_eq!(admit(&online, "hello"), Err("status_unavailable"));
    assert_eq!(admit(&offline, "batch"), Ok("batch".to_owned()));
}

fn self_digest() -> [u8; 32] {
    let bytes = std::fs::read("/proc/self/exe").unwrap();
    HashAlg::Sha256.digest(&bytes).try_into().unwrap()
}

#[test]
fn workload_socket_identifies_callers_and_refuses_unknown_ones() {
    let (pcrs, roots) = fresh_pcrs();
    let me = self_digest();
    let broker = broker_with(&pcrs, &[("selftest", me)], roots, |_| {});
    let host = trusted_host(&broker);
    let uid = rustix::process::getuid().as_raw();
    let sock_dir = tempfile::tempdir().unwrap();
    let socket = sock_dir.path().join("attester.sock");
    let start = |workloads: Vec<AllowedWorkload>, launchers: Vec<AllowedCaller>| {
        let mut cfg = DaemonConfig {
            workloads,
            launchers,
            ..DaemonConfig::default()
        };
        cfg.daemon.socket = socket.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let d = Daemon::new(host.settings.clone(), cfg, Arc::clone(&stop));
        let listener = d.bind().unwrap();
        let t = std::thread::spawn(move || d.serve(listener));
        (stop, t)
    };
    let key = SigningKey::generate().unwrap();
    let cnf = key.verifying_key().to_cose_key_bytes().unwrap();
    let ask = |req: &WorkloadRequest| workload_api::request(&socket, req, Duration::from_secs(30));

    // This test binary is unknown to the daemon: refused, no token.
    let (stop, t) = start(
        vec![AllowedWorkload {
            name: "selftest".into(),
            uid,
            exe_sha256: "00".repeat(32),
        }],
        vec![],
    );
    let e = ask(&WorkloadRequest::Token {
        cnf: Some(cnf.clone()),
        workload: None,
    })
    .unwrap_err();
    assert!(
        matches!(&e, WorkloadApiError::Refused { code, .. } if code == "caller_unknown"),
        "{e:?}"
    );
    let e = ask(&WorkloadRequest::Launch {
        workload: "selftest".into(),
        workload_digest: Some(me.to_vec()),
        cnf: Some(cnf.clone()),
    })
    .unwrap_err();
    assert!(
        matches!(&e, WorkloadApiError::Refused { code, .. } if code == "caller_not_launcher"),
        "{e:?}"
    );
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().tokens, 0);
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();

    // Known by (uid, executable digest): a token bound to the caller's key,
    // the same one again until 80 % of its lifetime has passed.
    let (stop, t) = start(
        vec![AllowedWorkload {
            name: "selftest".into(),
            uid,
            exe_sha256: hex::encode(me),
        }],
        vec![],
    );
    let got = ask(&WorkloadRequest::Token {
        cnf: Some(cnf.clone()),
        workload: None,
    })
    .unwrap();
    assert_eq!(got.workload, "selftest");
    assert!(got.renew_at < got.expires_at);
    let v = TokenVerifier::new(keys(&host), expectations("selftest"))
        .verify(&got.token, now())
        .unwrap();
    assert_eq!(v.claims.workload_digest.as_deref(), Some(&me[..]));
    assert_eq!(v.claims.cnf.as_ref().unwrap().kid, key.kid());
    let again = ask(&WorkloadRequest::Token {
        cnf: Some(cnf),
        workload: None,
    })
    .unwrap();
    assert_eq!(again.cti, got.cti);
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
}

/// Finding 4 (launcher binding): a configured launcher gets a `launch` token
/// only for the sealed image it hands the daemon, which the daemon hashes
/// itself: naming a digest without the image, with an unsealed file, or
/// with another program's image is refused, and nothing is minted.
#[test]
fn finding4_launch_tokens_are_for_the_image_the_daemon_measured() {
    use std::os::fd::AsFd;
    let (pcrs, roots) = fresh_pcrs();
    let me = self_digest();
    let broker = broker_with(&pcrs, &[("selftest", me)], roots, |_| {});
    let host = trusted_host(&broker);
    let uid = rustix::process::getuid().as_raw();
    let sock_dir = tempfile::tempdir().unwrap();
    let socket = sock_dir.path().join("attester.sock");
    let mut cfg = DaemonConfig {
        launchers: vec![AllowedCaller {
            uid,
            exe_sha256: hex::encode(me),
        }],
        ..DaemonConfig::default()
    };
    cfg.daemon.socket = socket.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let d = Daemon::new(host.settings.clone(), cfg, Arc::clone(&stop));
    let listener = d.bind().unwrap();
    let t = std::thread::spawn(move || d.serve(listener));

    let key = SigningKey::generate().unwrap();
    let cnf = key.verifying_key().to_cose_key_bytes().unwrap();
    let launch = |digest: [u8; 32]| WorkloadRequest::Launch {
        workload: "selftest".into(),
        workload_digest: Some(digest.to_vec()),
        cnf: Some(cnf.clone()),
    };
    let refused = |r: Result<_, WorkloadApiError>| match r {
        Err(WorkloadApiError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let timeout = Duration::from_secs(30);

    // The launcher's word alone (what every launch was before): refused.
    assert_eq!(
        refused(workload_api::request(&socket, &launch(me), timeout)),
        "launch_unmeasured"
    );
    // An ordinary file can change after the daemon hashed it: refused.
    let plain = std::fs::File::open("/proc/self/exe").unwrap();
    assert_eq!(
        refused(workload_api::request_launch(
            &socket,
            &launch(me),
            plain.as_fd(),
            timeout
        )),
        "launch_unmeasured"
    );
    // The sealed image of another program under an allowed digest: refused.
    let other = commands::resolve_program("true").unwrap();
    assert_ne!(other.digest, me);
    assert_eq!(
        refused(workload_api::request_launch(
            &socket,
            &launch(me),
            other.image(),
            timeout
        )),
        "launch_digest_mismatch"
    );
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().tokens, 0);

    // The sealed image of the allowed program: a token for its digest.
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let mine = commands::resolve_program(exe.to_str().unwrap()).unwrap();
    assert_eq!(mine.digest, me);
    let got = workload_api::request_launch(&socket, &launch(me), mine.image(), timeout).unwrap();
    let v = TokenVerifier::new(keys(&host), expectations("selftest"))
        .verify(&got.token, now())
        .unwrap();
    assert_eq!(v.claims.workload_digest.as_deref(), Some(&me[..]));
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
}

#[test]
fn run_hands_the_workload_a_bound_key() {
    use std::os::unix::fs::PermissionsExt;
    let (pcrs, roots) = fresh_pcrs();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("keyed.sh");
    let body =
        "#!/bin/sh\nprintf '%s\\n%s' \"$WRIT_KEY\" \"$WRIT_TOKEN\" > \"$WRIT_TEST_MARKER\"\n";
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let digest: [u8; 32] = HashAlg::Sha256.digest(body.as_bytes()).try_into().unwrap();
    let broker = broker_with(&pcrs, &[("keyed", digest)], roots, |_| {});
    let host = trusted_host(&broker);
    let runtime = dir.path().join("rt");
    let marker = dir.path().join("ran");
    let out = host.attester(
        &[
            "run",
            "--workload",
            "keyed",
            "--runtime-dir",
            runtime.to_str().unwrap(),
            "--socket",
            dir.path().join("no-daemon.sock").to_str().unwrap(),
            "--",
            script.to_str().unwrap(),
        ],
        &[("WRIT_TEST_MARKER", &marker)],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    let ran = std::fs::read_to_string(&marker).unwrap();
    let (key_path, token_b64) = ran.split_once('\n').unwrap();
    let token = URL_SAFE_NO_PAD.decode(token_b64.trim()).unwrap();
    let meta = std::fs::metadata(key_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&runtime).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let key = writ_attester::workload_key::read_key(std::path::Path::new(key_path)).unwrap();
    // The key file is named after the token it is bound to.
    let cti_hex = key_path
        .trim_end_matches(".pem")
        .rsplit('-')
        .next()
        .unwrap()
        .to_owned();
    let cti = hex::decode(&cti_hex).unwrap();
    let state = broker
        .block_on(broker.store.token_state(&cti))
        .unwrap()
        .unwrap();
    assert_eq!(state.record.workload, "keyed");
    assert!(!state.revoked);
    let v = TokenVerifier::new(keys(&host), expectations("keyed"))
        .verify(&token, now())
        .unwrap();
    assert_eq!(v.claims.cti, cti);
    assert_eq!(v.claims.cnf.as_ref().unwrap().kid, key.kid());
}

#[test]
fn run_uses_the_daemon_socket_for_trusted_launchers_only() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("via-daemon");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |_| {});
    let host = trusted_host(&broker);
    let uid = rustix::process::getuid().as_raw();
    let launcher =
        HashAlg::Sha256.digest(&std::fs::read(env!("CARGO_BIN_EXE_writ-attester")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attester.sock");
    let serve = |launchers: Vec<AllowedCaller>| {
        let mut cfg = DaemonConfig {
            launchers,
            ..DaemonConfig::default()
        };
        cfg.daemon.socket = socket.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let d = Daemon::new(host.settings.clone(), cfg, Arc::clone(&stop));
        let listener = d.bind().unwrap();
        (stop, std::thread::spawn(move || d.serve(listener)))
    };
    let run = || {
        host.attester(
            &[
                "run",
                "--workload",
                "hello",
                "--runtime-dir",
                dir.path().join("rt").to_str().unwrap(),
                "--socket",
                socket.to_str().unwrap(),
                "--",
                w.path.to_str().unwrap(),
            ],
            &[("WRIT_TEST_MARKER", &w.marker)],
        )
    };
    // The writ-attester binary is not a configured launcher: refused.
    let (stop, t) = serve(vec![]);
    let out = run();
    assert_eq!(out.status.code(), Some(3), "{}", support::stderr(&out));
    assert!(
        support::stderr(&out).contains("caller_not_launcher"),
        "{}",
        support::stderr(&out)
    );
    assert!(!w.ran());
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
    // Configured by uid and binary digest: the daemon obtains the token.
    let (stop, t) = serve(vec![AllowedCaller {
        uid,
        exe_sha256: hex::encode(&launcher),
    }]);
    let out = run();
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert!(
        support::stderr(&out).contains("via daemon"),
        "{}",
        support::stderr(&out)
    );
    assert!(w.ran());
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
}

#[test]
fn a_refused_workload_does_not_fail_the_host_or_revoke_its_tokens() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("keep");
    let broker = broker_with(&pcrs, &[("hello", w.digest)], roots, |_| {});
    let host = trusted_host(&broker);
    let b = bound_token(&host, "hello", &w.digest).unwrap();
    // Anyone on the host asking for a workload the policy does not know…
    let e = bound_token(&host, "unknown", &w.digest).unwrap_err();
    assert_eq!(refused_code(&e), "denied");
    let e = bound_token(&host, "hello", &[9; 32]).unwrap_err();
    assert_eq!(refused_code(&e), "denied");
    // …is refused, but the host stays trusted and its tokens stay valid.
    assert_eq!(host_view(&host).status, "trusted");
    assert!(!status_list(&host).revokes(&b.verified.claims));
}

/// The `writ-attester daemon` binary enrolls the host, re-attests on its
/// interval, serves the workload socket, and keeps going through a broker
/// restart: attempts while the broker is down fail and back off, and
/// re-attestation resumes once it is back.
#[test]
fn daemon_binary_reattests_and_survives_a_broker_restart() {
    let (pcrs, roots) = fresh_pcrs();
    let opts = BrokerOptions {
        policy: policy_toml("gov-daemon", &pcrs, &[]),
        ek_roots_pem: roots,
        bundled_manufacturers: false,
    };
    let broker =
        TestBroker::start_configured(tempfile::tempdir().unwrap(), opts.clone(), |_| {}).unwrap();
    let host = Host::new(&broker.url());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attester.sock");
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = {socket:?}\ninterval_secs = 2\njitter_percent = 0\nmax_backoff_secs = 2\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_writ-attester"))
        .arg("--broker")
        .arg(broker.url())
        .arg("--tcti")
        .arg(host.swtpm.tcti())
        .arg("--state-dir")
        .arg(host.state_dir.path())
        .arg("--no-logs")
        // One try per exchange: the daemon's own backoff rides out the
        // restart (a retry budget would absorb the 5 s outage by itself).
        .arg("--retry-budget-ms")
        .arg("0")
        .arg("daemon")
        .arg("--config")
        .arg(&config)
        .env("TSS2_LOG", "all+none")
        .stderr(log)
        .spawn()
        .unwrap();
    let appraisals = |b: &TestBroker| b.block_on(b.store.counts()).unwrap().appraisals;
    let wait_for = |what: &str, b: &TestBroker, done: &dyn Fn(&TestBroker) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done(b) {
            assert!(std::time::Instant::now() < deadline, "daemon never {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Enrolled on first start, then attested on every interval.
    wait_for("re-attested", &broker, &|b| appraisals(b) >= 2);
    let id = host.state().host_id;
    let view = broker.block_on(broker.store.host(&id)).unwrap().unwrap();
    assert_eq!(view.status.as_str(), "trusted");
    // The socket is served: this test binary is no known workload.
    let e = workload_api::request(
        &socket,
        &WorkloadRequest::Token {
            cnf: Some(
                SigningKey::generate()
                    .unwrap()
                    .verifying_key()
                    .to_cose_key_bytes()
                    .unwrap(),
            ),
            workload: None,
        },
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(
        matches!(&e, WorkloadApiError::Refused { code, .. } if code == "caller_unknown"),
        "{e:?}"
    );

    // Down for 5 s (at least two attempts), then back on the same address.
    let before = appraisals(&broker);
    let broker = broker
        .restart(Duration::from_secs(5), opts, |_| {})
        .unwrap();
    wait_for("resumed after the restart", &broker, &|b| {
        appraisals(b) >= before + 2
    });
    assert!(child.try_wait().unwrap().is_none(), "daemon exited");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log.contains("attestation failed") && log.contains("retrying in"),
        "{log}"
    );
    assert_eq!(
        broker
            .block_on(broker.store.host(&id))
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "trusted"
    );
}
