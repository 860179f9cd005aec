//! Token-key rotation end to end: after `keys::rotate` and a restart the
//! broker signs with the new key and publishes both; a relying-party gate
//! holding that key set admits tokens of either key during the overlap; the
//! previous key leaves `/v1/keys` when the overlap ends, and after
//! `keys::retire` and a restart a gate refreshed from `/v1/keys` refuses the
//! old key's tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use verifier_lib::pop::Window;
use verifier_lib::token::{
    endorsement, mint, Appraisal, Claims, EarStatus, Expectations, KeySet, SigningKey,
    TokenVerifier, PROFILE,
};
use writ_broker::clock::{Clock, OffsetClock};
use writ_broker::config::Config;
use writ_broker::state::AppState;
use writ_gate::{GateConfig, GateState};

const AUDIENCE: &str = "rotation-rp";
const OVERLAP: i64 = 1200;

async fn start(cfg: &Config, clock: &OffsetClock) -> (axum::Router, AppState) {
    let state = writ_broker::server::build_state(cfg.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    (writ_broker::app(state.clone()), state)
}

async fn get(app: &axum::Router, path: &str) -> Vec<u8> {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// The kids `/v1/keys` and `/v1/keys/jwks` publish (checked to agree).
async fn published(app: &axum::Router) -> (KeySet, Vec<String>) {
    let set = KeySet::from_cose_key_set(&get(app, "/v1/keys").await).unwrap();
    let jwks: serde_json::Value = serde_json::from_slice(&get(app, "/v1/keys/jwks").await).unwrap();
    let kids: Vec<String> = set.keys.iter().map(|k| k.kid.clone()).collect();
    let jwk_kids: Vec<String> = KeySet::from_jwks_json(&jwks)
        .unwrap()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, jwk_kids);
    (set, kids)
}

fn token(key: &SigningKey, holder: &SigningKey, issuer: &str, now: i64, cti: u8) -> Vec<u8> {
    let claims = Claims {
        iss: issuer.into(),
        sub: "host-1".into(),
        aud: AUDIENCE.into(),
        exp: now + 600,
        nbf: now,
        iat: now,
        cti: vec![cti; 16],
        eat_nonce: None,
        eat_profile: PROFILE.into(),
        appraisal: Appraisal {
            status: EarStatus::Affirming,
            trust_vector: Default::default(),
            policy_id: "rotation".into(),
            verifier_id: "writ-broker".into(),
            submods: Default::default(),
        },
        workload_digest: None,
        cnf: Some(holder.verifying_key()),
        lineage: None,
        scope: Vec::new(),
        audit_index: None,
        offline_ok: false,
        status: Some(verifier_lib::token::StatusRef {
            idx: u64::from(cti),
            uri: "https://writ.example/v1/status/lists/1".into(),
        }),
    };
    mint(&claims, key).unwrap()
}

/// A gate holding `keys`; revocation status is not what this test is about,
/// so the audience is allowed without a status list.
fn gate(keys: KeySet, issuer: &str, clock: &OffsetClock) -> Arc<GateState> {
    let c = clock.clone();
    GateState::new(
        GateConfig {
            verifier: TokenVerifier::new(keys, Expectations::new(issuer, AUDIENCE)),
            pop_window: Window::default(),
            max_status_age_secs: 30,
            allow_offline: [AUDIENCE.to_owned()].into(),
            replay_capacity: 100,
            replay_capacity_per_key: 100,
            max_body_bytes: 1024,
        },
        Arc::new(move || c.now()),
    )
    .unwrap()
}

fn admit(
    gate: &GateState,
    token: &[u8],
    holder: &SigningKey,
    now: i64,
) -> Result<(), &'static str> {
    let h = writ_gate::request_headers(token, holder, "POST", "/work", b"", now).unwrap();
    gate.admit("POST", "/work", Some(&h[0].1), Some(&h[1].1), b"")
        .map(|_| ())
        .map_err(|d| d.code())
}

fn config(dir: &Path) -> Config {
    std::fs::write(dir.join("policy.toml"), "id = \"t\"\n").unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}", dir.join("w.db").display());
    cfg.keys.dir = dir.join("keys");
    cfg.keys.overlap_secs = OVERLAP;
    cfg.policy.file = dir.join("policy.toml");
    cfg
}

#[tokio::test]
async fn old_tokens_verify_during_the_overlap_and_are_refused_after_retirement() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let issuer = cfg.tokens.issuer.clone();
    let clock = OffsetClock::default();
    let holder = SigningKey::generate().unwrap();

    // Before rotation: one key, which signed a token still in use.
    let (app, first) = start(&cfg, &clock).await;
    let old_kid = first.signing_key.kid();
    assert_eq!(published(&app).await.1, vec![old_kid.clone()]);
    let old_token = token(&first.signing_key, &holder, &issuer, clock.now(), 1);

    // Rotate and restart: the new key signs, both are published.
    let rotation = writ_broker::keys::rotate(&cfg.keys.dir, OVERLAP, clock.now()).unwrap();
    assert_eq!(rotation.old_kid, old_kid);
    let (app, second) = start(&cfg, &clock).await;
    let new_kid = second.signing_key.kid();
    assert_eq!(new_kid, rotation.new_kid);
    assert_ne!(new_kid, old_kid);
    let (both, kids) = published(&app).await;
    assert_eq!(kids, [new_kid.clone(), old_kid.clone()]);
    // What the broker signs now carries the new kid: its status list
    // verifies against the new key alone.
    let new_only = KeySet::new(vec![second.signing_key.verifying_key()]).unwrap();
    verifier_lib::status::verify(
        &get(&app, "/v1/status").await,
        &new_only,
        verifier_lib::status::ListCheck::at(clock.now(), 0),
    )
    .unwrap();
    let new_token = token(&second.signing_key, &holder, &issuer, clock.now(), 2);

    // A gate holding the published set admits tokens of both keys.
    let overlap_gate = gate(both, &issuer, &clock);
    assert_eq!(
        admit(&overlap_gate, &old_token, &holder, clock.now()),
        Ok(())
    );
    assert_eq!(
        admit(&overlap_gate, &new_token, &holder, clock.now()),
        Ok(())
    );

    // Without a restart, the old key leaves /v1/keys when the overlap ends.
    clock.advance(OVERLAP);
    assert_eq!(published(&app).await.1, vec![new_kid.clone()]);
    clock.advance(-OVERLAP);
    assert_eq!(published(&app).await.1, [new_kid.clone(), old_kid.clone()]);

    // Explicit retirement before the overlap ends, then a restart: only the
    // new key is published, and a gate refreshed from it refuses old tokens.
    assert_eq!(
        writ_broker::keys::retire(&cfg.keys.dir).unwrap(),
        Some(old_kid.clone())
    );
    let (app, _third) = start(&cfg, &clock).await;
    let (after, kids) = published(&app).await;
    assert_eq!(kids, [new_kid]);
    // Finding 8: a holder that pinned the first key set follows the served
    // endorsement to the new key; a key set nobody endorsed is refused.
    let pinned = KeySet::new(vec![first.signing_key.verifying_key()]).unwrap();
    let chain =
        endorsement::decode_endorsements(&get(&app, "/v1/keys/endorsements").await).unwrap();
    assert_eq!(
        endorsement::advance_pinned(&pinned, &after, &chain).unwrap(),
        after
    );
    let stranger = KeySet::new(vec![SigningKey::generate().unwrap().verifying_key()]).unwrap();
    assert!(endorsement::advance_pinned(&pinned, &stranger, &chain).is_err());
    let retired_gate = gate(after, &issuer, &clock);
    assert_eq!(
        admit(&retired_gate, &old_token, &holder, clock.now()),
        Err("token_invalid")
    );
    assert_eq!(
        admit(&retired_gate, &new_token, &holder, clock.now()),
        Ok(())
    );
}

#[tokio::test]
async fn the_first_start_after_the_overlap_retires_the_previous_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let clock = OffsetClock::default();
    let (_, first) = start(&cfg, &clock).await;
    let rotation = writ_broker::keys::rotate(&cfg.keys.dir, OVERLAP, clock.now()).unwrap();
    assert_eq!(rotation.old_kid, first.signing_key.kid());
    clock.advance(OVERLAP);
    let (app, _) = start(&cfg, &clock).await;
    assert_eq!(published(&app).await.1, [rotation.new_kid]);
    assert!(!cfg
        .keys
        .dir
        .join(writ_broker::keys::PREVIOUS_TOKEN_KEY_FILE)
        .exists());
}
