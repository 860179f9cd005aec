//! Handlers through the router, without sockets (`tower::ServiceExt::oneshot`),
//! on every storage backend (SQLite and a throw-away PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pg_harness::{on_each_backend, Backend, TestStorage};
use tower::ServiceExt;
use verifier_lib::token::KeySet;
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;

/// The operator token the test broker accepts (its SHA-256 is configured).
const OPERATOR: &str = "router-test-operator-token";

/// A broker's files (keys, policy) and its store; both live as long as this.
struct Fixture {
    dir: tempfile::TempDir,
    storage: TestStorage,
}

async fn router(backend: Backend) -> (Fixture, axum::Router, writ_broker::state::AppState) {
    router_with(backend, |cfg| {
        cfg.operators.tokens = vec![writ_broker::config::OperatorToken {
            name: "ops".into(),
            sha256: hex::encode(verifier_lib::crypto::HashAlg::Sha256.digest(OPERATOR.as_bytes())),
        }];
    })
    .await
}

async fn router_with(
    backend: Backend,
    tweak: impl FnOnce(&mut Config),
) -> (Fixture, axum::Router, writ_broker::state::AppState) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "id = \"t\"\n").unwrap();
    let path = dir.path().to_owned();
    let storage = tokio::task::spawn_blocking(move || backend.storage(&path, "w"))
        .await
        .unwrap()
        .unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = storage.url().to_owned();
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    tweak(&mut cfg);
    let state = writ_broker::server::build_state(cfg, Arc::new(OffsetClock::default()))
        .await
        .unwrap();
    let fixture = Fixture { dir, storage };
    (fixture, writ_broker::app(state.clone()), state)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn operator_get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {OPERATOR}"))
        .body(Body::empty())
        .unwrap()
}

fn code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

async fn errors_have_stable_codes_and_change_nothing(backend: Backend) {
    let (_d, app, state) = router(backend).await;
    let before = state.store.counts().await.unwrap();
    let (s, b) = call(&app, post("/v1/challenge", "{")).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let (s, b) = call(&app, post("/v1/challenge", r#"{"host_id":"nope"}"#)).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::NOT_FOUND, "unknown_host")
    );
    let (s, b) = call(&app, post("/v1/challenge", r#"{"host_id":"nope","x":1}"#)).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
    let (s, b) = call(&app, operator_get("/v1/hosts/zz")).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::NOT_FOUND, "unknown_host")
    );
    assert_eq!(state.store.counts().await.unwrap(), before);
}

async fn key_set_lists_the_signing_key(backend: Backend) {
    let (_d, app, state) = router(backend).await;
    let (s, b) = call(&app, Request::get("/v1/keys").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let keys = KeySet::from_cose_key_set(&b).unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].kid, state.signing_key.kid());
    let (s, b) = call(
        &app,
        Request::get("/v1/keys/jwks").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let jwks: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(KeySet::from_jwks_json(&jwks).unwrap(), keys);
    let (s, b) = call(&app, operator_get("/v1/hosts")).await;
    assert_eq!((s, b.as_slice()), (StatusCode::OK, b"[]".as_slice()));
}

/// Operator endpoints need a configured operator's bearer token; with none
/// configured they are closed. Public endpoints need nothing.
async fn operator_endpoints_need_an_operator_token(backend: Backend) {
    let (_d, app, state) = router(backend).await;
    let before = state.store.counts().await.unwrap();
    let bare = |m: &str, p: &str| {
        Request::builder()
            .method(m)
            .uri(p)
            .body(Body::empty())
            .unwrap()
    };
    let with = |m: &str, p: &str, auth: &str| {
        Request::builder()
            .method(m)
            .uri(p)
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap()
    };
    let operator_routes = [
        ("GET", "/v1/hosts"),
        ("GET", "/v1/hosts/h"),
        ("GET", "/v1/hosts/h/events"),
        ("POST", "/v1/hosts/h/revoke"),
        ("POST", "/v1/hosts/h/reinstate"),
        ("POST", "/v1/tokens/00112233445566778899aabbccddeeff/revoke"),
        ("POST", "/v1/workloads/w/revoke"),
        ("POST", "/v1/policy/learn"),
        ("GET", "/v1/policy/shadow/report"),
    ];
    for (m, p) in operator_routes {
        let (s, b) = call(&app, bare(m, p)).await;
        assert_eq!(
            (s, code(&b).as_str()),
            (StatusCode::UNAUTHORIZED, "operator_unauthorized"),
            "{m} {p}"
        );
        let (s, b) = call(&app, with(m, p, "Bearer not-the-token")).await;
        assert_eq!(
            (s, code(&b).as_str()),
            (StatusCode::UNAUTHORIZED, "operator_unauthorized"),
            "{m} {p}"
        );
        let (s, b) = call(&app, with(m, p, OPERATOR)).await;
        assert_eq!(
            (s, code(&b).as_str()),
            (StatusCode::UNAUTHORIZED, "operator_unauthorized"),
            "{m} {p}"
        );
    }
    // Nothing was revoked or logged by the refused calls.
    assert_eq!(state.store.counts().await.unwrap(), before);
    // Public endpoints stay public.
    let (s, _) = call(&app, bare("GET", "/v1/keys")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, bare("GET", "/v1/audit/checkpoint")).await;
    assert_eq!(s, StatusCode::OK);

    // A revocation by an operator names the operator in the audit log.
    let (s, b) = call(
        &app,
        with(
            "POST",
            "/v1/workloads/w/revoke",
            &format!("Bearer {OPERATOR}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let rows = state.store.audit_leaves(0, 1 << 20).await.unwrap();
    let decisions: Vec<_> = rows
        .iter()
        .map(|r| verifier_lib::audit::Leaf::decode(&r.leaf).unwrap().decision)
        .collect();
    assert!(decisions.iter().any(|d| matches!(d,
        verifier_lib::audit::Decision::OperatorAction { who, what } if who == "ops" && what == "revoke workload w")));

    // No operator configured: closed.
    let (_d2, closed, _) = router_with(backend, |_| {}).await;
    let (s, b) = call(
        &closed,
        with("GET", "/v1/hosts", &format!("Bearer {OPERATOR}")),
    )
    .await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::UNAUTHORIZED, "operator_auth_not_configured")
    );
}

async fn token_key_survives_restart_and_is_private(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let (fx, _app, state) = router(backend).await;
    let path = fx
        .dir
        .path()
        .join("keys")
        .join(writ_broker::keys::TOKEN_KEY_FILE);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = writ_broker::keys::load_or_generate(&fx.dir.path().join("keys")).unwrap();
    assert_eq!(again.kid(), state.signing_key.kid());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        writ_broker::keys::load_or_generate(&fx.dir.path().join("keys")),
        Err(writ_broker::keys::KeyError::Permissions { .. })
    ));
}

/// `writ-broker audit verify --db` reads the store a broker wrote, whichever
/// backend: a SQLite file or a PostgreSQL URL.
async fn audit_verify_reads_the_store(backend: Backend) {
    let (fx, app, state) = router(backend).await;
    let (s, b) = call(
        &app,
        Request::post("/v1/workloads/w/revoke")
            .header("authorization", format!("Bearer {OPERATOR}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let cp = state.audit.checkpoint_now().await.unwrap().unwrap();
    assert!(cp.size >= 1);
    let url = fx.storage.url().to_owned();
    let db = url.strip_prefix("sqlite://").unwrap_or(&url).to_owned();
    let keys = fx.dir.path().join("keys");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_writ-broker"))
            .args(["audit", "verify", "--db", &db, "--keys-dir"])
            .arg(keys)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["report"]["tree_size"], cp.size, "{report}");
    assert_eq!(report["report"]["unsigned_leaves"], 0, "{report}");
}

on_each_backend!(
    audit_verify_reads_the_store,
    errors_have_stable_codes_and_change_nothing,
    key_set_lists_the_signing_key,
    operator_endpoints_need_an_operator_token,
    token_key_survives_restart_and_is_private,
);
