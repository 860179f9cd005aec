//! The status list is re-signed while nothing changes: relying parties
//! measure freshness from the list's signed `iat` (a `304` or a keep-alive
//! refreshes nothing), so the broker must hand out a newly signed list at
//! least every `status.resign_secs`, on `/v1/status` and on the stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;

async fn status(app: &axum::Router, now: i64, keys: &verifier_lib::token::KeySet) -> (String, i64) {
    let resp = app
        .clone()
        .oneshot(Request::get("/v1/status").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let list =
        verifier_lib::status::verify(&bytes, keys, verifier_lib::status::ListCheck::at(now, 0))
            .unwrap();
    (etag, list.issued_at)
}

#[tokio::test]
async fn an_unchanged_list_is_re_signed_every_resign_interval() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "id = \"t\"\n").unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}", dir.path().join("w.db").display());
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    cfg.status.resign_secs = 10;
    let clock = OffsetClock::default();
    let state = writ_broker::server::build_state(cfg, Arc::new(clock.clone()))
        .await
        .unwrap();
    let app = writ_broker::app(state.clone());
    let keys = (*state.key_set).clone();
    let now = || state.now();

    let (etag1, iat1) = status(&app, now(), &keys).await;
    // Within the interval: the same signed list.
    clock.advance(5);
    let (etag2, iat2) = status(&app, now(), &keys).await;
    assert_eq!((etag1.as_str(), iat1), (etag2.as_str(), iat2));
    // Past it: a newly signed list of the same version.
    clock.advance(6);
    let (etag3, iat3) = status(&app, now(), &keys).await;
    assert_ne!(etag3, etag1);
    assert!(iat3 >= iat1 + 10, "{iat1} -> {iat3}");
}

#[test]
fn resign_interval_must_be_shorter_than_the_lifetime() {
    let mut cfg = Config::default();
    cfg.status.resign_secs = cfg.status.ttl_secs;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let err = Config::load(Some(&path), figment::providers::Env::raw().only(&[])).unwrap_err();
    assert!(err.to_string().contains("status.resign_secs"), "{err}");
}
