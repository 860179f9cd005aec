//! `/v1/tokens/derive` and its replay cache, through the router (no
//! sockets, no TPM: the host, its appraisals and the parent tokens are
//! written through the audit writer as the decisions would write them).
//!
//! A proof is recorded only once its parent is known, unrevoked and its host
//! may derive, and the cache is partitioned by the parent's `cnf` key: one
//! key flooding proofs refuses only its own, and a refused request leaves
//! nothing in the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::BodyExt;
use tower::ServiceExt;
use verifier_lib::api::governance::{DeriveRequest, AUTH_SCHEME, POP_HEADER};
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::{self, key_id, RequestContext};
use verifier_lib::token::{self, Appraisal, Claims, EarStatus, SigningKey};
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;
use writ_broker::state::AppState;
use writ_broker::store::audit::{AppraisalChange, Expect, NonceUse, StateChange};
use writ_broker::store::{AppraisalRecord, HostRecord, HostStatus, TokenRecord};

const HOST: &str = "host-1";
const PATH: &str = "/v1/tokens/derive";

struct Broker {
    _dir: tempfile::TempDir,
    app: axum::Router,
    st: AppState,
    clock: OffsetClock,
}

async fn broker(per_key: usize) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "id = \"t\"\n").unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}", dir.path().join("w.db").display());
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    cfg.lineage.replay_cache_entries_per_key = per_key;
    let clock = OffsetClock::default();
    let st = writ_broker::server::build_state(cfg, Arc::new(clock.clone()))
        .await
        .unwrap();
    st.audit
        .append(
            StateChange::Host(HostRecord {
                id: HOST.into(),
                status: HostStatus::Enrolled,
                ek_public: vec![1],
                ek_cert_digest: vec![2],
                ak_public: vec![3],
                ak_name: vec![4],
                enrolled_at: st.now() - 100,
                last_attested_at: None,
                last_failure: None,
                policy_id: None,
            }),
            Vec::new(),
        )
        .await
        .unwrap();
    Broker {
        _dir: dir,
        app: writ_broker::app(st.clone()),
        st,
        clock,
    }
}

/// Claims of a parent token bound to `holder`, with a new cti.
fn claims(b: &Broker, holder: &SigningKey) -> Claims {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let now = b.st.now();
    Claims {
        iss: b.st.config.tokens.issuer.clone(),
        sub: HOST.into(),
        aud: "w".into(),
        exp: now + 600,
        nbf: now - 5,
        iat: now - 5,
        cti: vec![n; 16],
        eat_nonce: None,
        eat_profile: token::PROFILE.into(),
        appraisal: Appraisal {
            status: EarStatus::Affirming,
            trust_vector: Default::default(),
            policy_id: "t".into(),
            verifier_id: "writ-broker".into(),
            submods: Default::default(),
        },
        workload_digest: None,
        cnf: Some(holder.verifying_key()),
        lineage: None,
        scope: Vec::new(),
        audit_index: None,
        offline_ok: false,
        status: None,
    }
}

/// A parent token bound to `holder`, recorded as minted by a passing
/// appraisal of the host (which leaves the host trusted and fresh).
async fn parent(b: &Broker, holder: &SigningKey) -> (Vec<u8>, Vec<u8>) {
    let claims = claims(b, holder);
    let minted = token::mint(&claims, &b.st.signing_key).unwrap();
    let now = b.st.now();
    let nonce = [b"nonce-".as_slice(), &claims.cti].concat();
    let status = b.st.store.host(HOST).await.unwrap().unwrap().status;
    let change = AppraisalChange {
        nonce: NonceUse {
            digest: nonce,
            expires_at: now + 60,
            at: now,
        },
        expect: Expect {
            status: Some(status),
            clock: None,
        },
        appraisal: AppraisalRecord {
            host_id: HOST.into(),
            at: now,
            verdict: "affirming".into(),
            policy_id: "t".into(),
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
            cti: claims.cti.clone(),
            host_id: HOST.into(),
            workload: "w".into(),
            workload_digest: vec![0; 32],
            iat: claims.iat,
            exp: claims.exp,
            policy_id: "t".into(),
            token_digest: HashAlg::Sha256.digest(&minted),
            status: None,
            audit_index: None,
        }),
        ima_cursor: None,
    };
    b.st.audit
        .append(StateChange::Appraisal(Box::new(change)), Vec::new())
        .await
        .unwrap();
    (minted, claims.cti)
}

/// A derive request for `parent` with a fresh proof by `holder`.
fn request(b: &Broker, parent: &[u8], holder: &SigningKey, jti: [u8; 16]) -> Request<Body> {
    let body = serde_json::to_vec(&DeriveRequest {
        aud: None,
        scope: Vec::new(),
        lifetime_secs: Some(60),
        cnf: SigningKey::generate()
            .unwrap()
            .verifying_key()
            .to_cose_key_bytes()
            .unwrap(),
    })
    .unwrap();
    let digest = HashAlg::Sha256.digest(&body);
    let ctx = RequestContext {
        method: "POST",
        path: PATH,
        body_digest: &digest,
        challenge: None,
    };
    let proof = pop::create(holder, parent, &ctx, b.st.now(), jti).unwrap();
    Request::post(PATH)
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("{AUTH_SCHEME} {}", URL_SAFE_NO_PAD.encode(parent)),
        )
        .header(POP_HEADER, URL_SAFE_NO_PAD.encode(proof))
        .body(Body::from(body))
        .unwrap()
}

async fn call(b: &Broker, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = b.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn cached(b: &Broker, holder: &SigningKey) -> usize {
    let cache = b.st.governance.replay.lock().unwrap();
    cache.key_len(&key_id(&holder.verifying_key()))
}

#[tokio::test]
async fn a_flood_of_proofs_from_one_key_does_not_stop_another_keys_derive() {
    let b = broker(3).await;
    let (flooder, other) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let (flooding, _) = parent(&b, &flooder).await;
    let (parent_b, _) = parent(&b, &other).await;

    for i in 0..3 {
        let (s, v) = call(&b, request(&b, &flooding, &flooder, [i; 16])).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = call(&b, request(&b, &flooding, &flooder, [3; 16])).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "pop_replay_key_full"),
        "{v}"
    );
    assert_eq!(cached(&b, &flooder), 3);

    // The other parent key still derives, with the same jti as the flooder's.
    let (s, v) = call(&b, request(&b, &parent_b, &other, [0; 16])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["depth"], 1);
    assert_eq!(cached(&b, &other), 1);

    // A replay is still refused.
    let replayed = request(&b, &parent_b, &other, [9; 16]);
    let (parts, body) = replayed.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let again = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let (s, v) = call(&b, again).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&b, Request::from_parts(parts, Body::from(bytes))).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "pop_replayed"),
        "{v}"
    );
}

#[tokio::test]
async fn a_proof_for_an_unknown_or_revoked_parent_is_refused_unrecorded() {
    // One live proof per key: a refused request that consumed room would
    // show as `pop_replay_key_full` on the next one.
    let b = broker(1).await;
    let holder = SigningKey::generate().unwrap();

    // Signed by this broker's key, but never recorded: unknown.
    let unknown = token::mint(&claims(&b, &holder), &b.st.signing_key).unwrap();
    for i in 0..3 {
        let (s, v) = call(&b, request(&b, &unknown, &holder, [i; 16])).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::FORBIDDEN, "parent_unknown"),
            "{v}"
        );
    }
    assert_eq!(cached(&b, &holder), 0);

    // Recorded, then revoked.
    let (revoked, cti) = parent(&b, &holder).await;
    b.st.audit
        .append(
            StateChange::RevokeToken {
                cti,
                reason: "test".into(),
                at: b.st.now(),
            },
            Vec::new(),
        )
        .await
        .unwrap();
    for i in 0..3 {
        let (s, v) = call(&b, request(&b, &revoked, &holder, [i; 16])).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::FORBIDDEN, "parent_revoked"),
            "{v}"
        );
    }
    assert_eq!(cached(&b, &holder), 0);

    // The key's one entry is still free for a live parent.
    let (live, _) = parent(&b, &holder).await;
    let (s, v) = call(&b, request(&b, &live, &holder, [0; 16])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(cached(&b, &holder), 1);
    let (s, v) = call(&b, request(&b, &live, &holder, [1; 16])).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "pop_replay_key_full"),
        "{v}"
    );
}

/// A parent past its `exp` (beyond the leeway) derives nothing: 401
/// `token_invalid`, and its proof is not recorded.
#[tokio::test]
async fn an_expired_parent_derives_nothing_unrecorded() {
    let b = broker(4).await;
    let holder = SigningKey::generate().unwrap();
    let (live, _) = parent(&b, &holder).await;
    let before = b.st.store.counts().await.unwrap();
    // claims() sets exp = now + 600; the leeway is tokens.leeway_secs.
    b.clock
        .advance(600 + b.st.config.tokens.leeway_secs.max(0) + 1);
    let (s, v) = call(&b, request(&b, &live, &holder, [7; 16])).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "token_invalid"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{v}"
    );
    assert_eq!(cached(&b, &holder), 0);
    assert_eq!(b.st.store.counts().await.unwrap(), before);
}
