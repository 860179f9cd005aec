//! Finding 3 of the security review: unauthenticated requests write no
//! permanent rows or leaves of their own, and retention keeps the database
//! from growing under a refusal flood.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use tower::ServiceExt;
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;
use writ_broker::state::AppState;

async fn broker() -> (tempfile::TempDir, axum::Router, AppState, OffsetClock) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "id = \"t\"\n").unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}", dir.path().join("w.db").display());
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    let clock = OffsetClock::default();
    let state = writ_broker::server::build_state(cfg, Arc::new(clock.clone()))
        .await
        .unwrap();
    (dir, writ_broker::app(state.clone()), state, clock)
}

async fn post(app: &axum::Router, path: &str, body: String) -> StatusCode {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

/// An EK public area that parses (so the broker can name a host), with a
/// junk certificate.
fn junk_enroll(i: usize) -> String {
    let ek_public = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../verifier-lib/tests/vectors/quote/keylime-swtpm/sha256-pcr15-16-22/ek.pub"),
    )
    .unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    serde_json::json!({
        "ek_public": b64(&ek_public),
        "ak_public": b64(&ek_public),
        "ek_cert": b64(format!("junk certificate {i}").as_bytes()),
        "ek_chain": [],
    })
    .to_string()
}

async fn leaves(st: &AppState) -> usize {
    st.store.audit_leaf_hashes(0, u32::MAX).await.unwrap().len()
}

fn db_bytes(dir: &tempfile::TempDir) -> u64 {
    ["w.db", "w.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
        .sum()
}

async fn flood(app: &axum::Router, round: usize) {
    for i in 0..400 {
        let s = post(app, "/v1/enroll/start", junk_enroll(round * 1000 + i)).await;
        assert!(s.is_client_error(), "{s}");
        let s = post(
            app,
            "/v1/challenge",
            format!(r#"{{"host_id":"unknown-{round}-{i}"}}"#),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn finding3_refusal_flood_adds_a_handful_of_leaves_and_no_rows() {
    let (dir, app, st, clock) = broker().await;
    let before_leaves = leaves(&st).await;
    let before = st.store.counts().await.unwrap();
    flood(&app, 0).await;
    // Nothing was written for 800 refused requests...
    assert_eq!(leaves(&st).await, before_leaves);
    assert_eq!(st.store.counts().await.unwrap(), before);
    // ...until the window closes: one summary leaf for the one source.
    clock.advance(61);
    // (The broker's own flusher may have taken it first.)
    st.refusals.flush(&st.audit, st.now(), false).await;
    assert_eq!(leaves(&st).await, before_leaves + 1);

    // Retention runs; a second flood does not grow the database.
    writ_broker::server::retention::run_once(&st).await.unwrap();
    let size = db_bytes(&dir);
    flood(&app, 1).await;
    clock.advance(61);
    st.refusals.flush(&st.audit, st.now(), true).await;
    writ_broker::server::retention::run_once(&st).await.unwrap();
    assert_eq!(leaves(&st).await, before_leaves + 2);
    assert_eq!(st.store.counts().await.unwrap(), before);
    let after = db_bytes(&dir);
    assert!(
        after <= size + 8192,
        "database grew from {size} to {after} bytes"
    );
}

/// Issuing challenges writes no row and no leaf (the store's row deletion
/// is covered by `store::sqlite::retention`'s own test).
#[tokio::test]
async fn finding3_challenges_write_nothing() {
    let (_dir, _app, st, _clock) = broker().await;
    let before_leaves = leaves(&st).await;
    let before = st.store.counts().await.unwrap();
    for i in 0..200 {
        writ_broker::decision::nonce::issue(&st, &format!("h{i}"))
            .await
            .unwrap();
    }
    assert_eq!(leaves(&st).await, before_leaves);
    assert_eq!(st.store.counts().await.unwrap(), before);
}

/// Forged evidence under a valid challenge for a real host: each attempt is
/// refused (no token, the host untouched) but writes no appraisal row and no
/// leaf of its own; the attempts from one source become one summary leaf per
/// window, so a flood of forged quotes cannot grow the log.
#[tokio::test]
async fn finding3_forged_evidence_flood_writes_one_leaf_per_window() {
    use writ_broker::store::audit::StateChange;
    use writ_broker::store::{HostRecord, HostStatus};
    let (_dir, app, st, clock) = broker().await;
    st.audit
        .append(
            StateChange::Host(HostRecord {
                id: "host-1".into(),
                status: HostStatus::Trusted,
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
    let before_leaves = leaves(&st).await;
    let before = st.store.counts().await.unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let nonce = writ_broker::decision::nonce::issue(&st, "host-1")
        .await
        .unwrap()
        .nonce;
    for i in 0..200u32 {
        let body = serde_json::json!({
            "host_id": "host-1",
            "nonce": b64(&nonce),
            "evidence": {
                "attest": b64(format!("not a quote {i}").as_bytes()),
                "signature": b64(b"not a signature"),
                "pcrs": {"sha256": {"0": "00".repeat(32)}},
            },
        });
        let req = Request::post("/v1/attest")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["verdict"], "contraindicated", "{v}");
        assert_eq!(v["host_status"], "trusted", "{v}");
    }
    assert_eq!(leaves(&st).await, before_leaves);
    assert_eq!(st.store.counts().await.unwrap(), before);
    assert_eq!(
        st.store.host("host-1").await.unwrap().unwrap().status,
        HostStatus::Trusted
    );
    clock.advance(61);
    st.refusals.flush(&st.audit, st.now(), false).await;
    assert_eq!(leaves(&st).await, before_leaves + 1);
}
