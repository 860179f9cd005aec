//! Regression tests of the broker redesign (one decision per request, its
//! preconditions re-checked in the transaction that applies it): token
//! requests racing an operator's revocation of their host are either minted
//! before the revocation (and revoked by it) or refused. No token is valid
//! after it, for quote-backed tokens (`/v1/tokens`), signed requests
//! (`/v1/tokens/signed`) and derived tokens (`/v1/tokens/derive`).
//!
//! Before the redesign `/v1/tokens` checked the host's status before the
//! transaction and the token insert did not check again: with requests in a
//! loop and a revoke in the middle, one token was minted after the revoke,
//! unrevoked and absent from the status list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{fresh_pcrs, Host, Workload};
use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker, OPERATOR_TOKEN};
use verifier_lib::api::governance::{DeriveRequest, DeriveResponse};
use verifier_lib::token::SigningKey;
use writ_attester::client::ClientError;
use writ_attester::commands::{self, CommandError};
use writ_attester::request_key;
use writ_attester::tpm::AkAlg;

fn broker(w: &Workload) -> (TestBroker, Host) {
    let (pcrs, roots) = fresh_pcrs();
    let broker = TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy: policy_toml("race-1", &pcrs, &[("hello", w.digest)]),
            ek_roots_pem: roots,
            bundled_manufacturers: false,
        },
        |_| {},
    )
    .unwrap();
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    assert_eq!(
        commands::attest(&host.settings).unwrap().host_status,
        "trusted"
    );
    (broker, host)
}

fn revoke_host(broker: &TestBroker, host: &Host) {
    let resp = reqwest::blocking::Client::new()
        .post(format!(
            "{}/v1/hosts/{}/revoke",
            broker.url(),
            host.state().host_id
        ))
        .header("authorization", format!("Bearer {OPERATOR_TOKEN}"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

fn refusal(e: &CommandError) -> String {
    match e {
        CommandError::Broker(ClientError::Refused { code, .. }) => code.clone(),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

/// Runs `request` in a loop on another thread, revokes the host after
/// `delay`, and returns the ids of the tokens the loop got and the codes of
/// its refusals.
fn race<F>(
    broker: &TestBroker,
    host: &Host,
    delay: Duration,
    mut request: F,
) -> (Vec<Vec<u8>>, Vec<String>)
where
    F: FnMut() -> Result<Vec<u8>, String> + Send + 'static,
{
    let revoked = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&revoked);
    let client = std::thread::spawn(move || {
        let (mut got, mut refused) = (Vec::new(), Vec::new());
        // Keep asking until a few requests came after the revocation.
        let mut after = 0;
        for _ in 0..400 {
            let was_revoked = seen.load(Ordering::SeqCst);
            match request() {
                Ok(cti) => got.push(cti),
                Err(code) => refused.push(code),
            }
            if was_revoked {
                after += 1;
                if after >= 3 {
                    break;
                }
            }
        }
        (got, refused)
    });
    std::thread::sleep(delay);
    revoke_host(broker, host);
    revoked.store(true, Ordering::SeqCst);
    client.join().unwrap()
}

/// Every token a client got is revoked in the store and in the status list.
fn assert_none_valid(broker: &TestBroker, got: &[Vec<u8>], refused: &[String]) {
    assert!(!refused.is_empty(), "no request came after the revocation");
    for code in refused {
        assert!(
            ["host_revoked", "decision_conflict"].contains(&code.as_str()),
            "untyped or unexpected refusal: {refused:?}"
        );
    }
    let (_, listed) = broker.block_on(broker.store.revoked_ctis(0)).unwrap();
    for cti in got {
        let t = broker
            .block_on(broker.store.token_state(cti))
            .unwrap()
            .unwrap();
        assert!(
            t.revoked,
            "token {} is valid after the revocation",
            hex::encode(cti)
        );
        assert!(listed.contains(cti));
    }
}

#[test]
fn quote_tokens_racing_a_revocation() {
    let w = Workload::new("race-quote");
    let (broker, host) = broker(&w);
    let settings = host.settings.clone();
    let digest = w.digest;
    let (got, refused) = race(&broker, &host, Duration::from_millis(400), move || {
        commands::obtain_token_with(&settings, "hello", &digest, None)
            .map(|(_, v)| v.claims.cti)
            .map_err(|e| refusal(&e))
    });
    assert!(!got.is_empty(), "no token before the revocation");
    assert_none_valid(&broker, &got, &refused);
}

#[test]
fn signed_tokens_racing_a_revocation() {
    let w = Workload::new("race-signed");
    let (broker, host) = broker(&w);
    request_key::register(&host.settings).unwrap();
    let settings = host.settings.clone();
    let digest = w.digest;
    let (got, refused) = race(&broker, &host, Duration::from_millis(300), move || {
        request_key::obtain_token_signed(&settings, "hello", &digest, None)
            .map(|(_, v)| v.claims.cti)
            .map_err(|e| refusal(&e))
    });
    assert!(!got.is_empty(), "no token before the revocation");
    assert_none_valid(&broker, &got, &refused);
}

#[test]
fn derived_tokens_racing_a_revocation() {
    let w = Workload::new("race-derive");
    let (broker, host) = broker(&w);
    let parent_key = SigningKey::generate().unwrap();
    let cnf = parent_key.verifying_key().to_cose_key_bytes().unwrap();
    let (parent, _) =
        commands::obtain_token_with(&host.settings, "hello", &w.digest, Some(&cnf)).unwrap();
    let url = format!("{}/v1/tokens/derive", broker.url());
    let (got, refused) = race(&broker, &host, Duration::from_millis(200), move || {
        let child = SigningKey::generate().unwrap();
        let body = serde_json::to_vec(&DeriveRequest {
            aud: None,
            scope: vec!["read".into()],
            lifetime_secs: Some(60),
            cnf: child.verifying_key().to_cose_key_bytes().unwrap(),
        })
        .unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = writ_gate::request_headers(
            &parent,
            &parent_key,
            "POST",
            "/v1/tokens/derive",
            &body,
            now,
        )
        .unwrap();
        let mut req = reqwest::blocking::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().unwrap();
        if resp.status().is_success() {
            let d: DeriveResponse = resp.json().unwrap();
            Ok(d.cti)
        } else {
            let v: serde_json::Value = resp.json().unwrap();
            Err(v["error"]["code"].as_str().unwrap_or("").to_owned())
        }
    });
    assert!(!got.is_empty(), "no child before the revocation");
    // A revoked host's tokens are revoked, so its children are refused as
    // children of a revoked parent.
    let refused: Vec<String> = refused
        .into_iter()
        .map(|c| match c.as_str() {
            "parent_revoked" => "host_revoked".to_owned(),
            _ => c,
        })
        .collect();
    assert_none_valid(&broker, &got, &refused);
}
