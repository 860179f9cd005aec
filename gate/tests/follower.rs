//! `StatusFollower` against a local status endpoint: a verified list is
//! installed, a `304` confirms it, and a list signed by an unknown key or for
//! another issuer is refused and leaves the cache as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use support::{Clock, Keys, AUDIENCE, ISSUER, T0};
use verifier_lib::status::StatusList;
use verifier_lib::token::SigningKey;
use writ_gate::{FollowMode, GateState, StatusFollower};

#[derive(Clone)]
struct Served {
    body: Arc<Mutex<(String, Vec<u8>)>>,
    not_modified: Arc<AtomicUsize>,
}

async fn status(
    axum::extract::State(s): axum::extract::State<Served>,
    headers: HeaderMap,
) -> axum::response::Response {
    let (etag, body) = s.body.lock().unwrap().clone();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::ETAG, etag)], body).into_response()
}

async fn serve(served: Served) -> String {
    let app = axum::Router::new()
        .route("/v1/status", axum::routing::get(status))
        .with_state(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn signed(issuer: &str, version: u64, key: &SigningKey) -> Vec<u8> {
    StatusList::new(issuer, version, T0, T0 + 600, [[5u8; 16]])
        .sign(key)
        .unwrap()
}

#[tokio::test]
async fn poll_installs_verified_lists_and_confirms_on_304() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let served = Served {
        body: Arc::new(Mutex::new((
            "\"v1\"".into(),
            signed(ISSUER, 1, &keys.broker),
        ))),
        not_modified: Arc::new(AtomicUsize::new(0)),
    };
    let follower = StatusFollower {
        broker: serve(served.clone()).await,
        mode: FollowMode::Poll,
        poll_interval: Duration::from_secs(1),
        leeway_secs: 30,
    };
    let http = reqwest::Client::new();
    let mut etag = None;

    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(gate.status_version(), Some(1));
    assert_eq!(etag.as_deref(), Some("\"v1\""));

    // The list ages past max_status_age_secs; a 304 confirms it again.
    clock.advance(40);
    let token = keys.token(AUDIENCE, 1);
    let h =
        writ_gate::request_headers(&token, &keys.holder, "POST", "/", b"", clock.get()).unwrap();
    let denial = gate
        .admit("POST", "/", Some(&h[0].1), Some(&h[1].1), b"")
        .unwrap_err();
    assert_eq!(denial.code(), "status_unavailable");
    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(served.not_modified.load(Ordering::SeqCst), 1);
    gate.admit("POST", "/", Some(&h[0].1), Some(&h[1].1), b"")
        .unwrap();

    // Lists the gate must not trust are refused and change nothing.
    let stranger = SigningKey::generate().unwrap();
    for (tag, body) in [
        ("\"x1\"", signed(ISSUER, 5, &stranger)),
        ("\"x2\"", signed("someone-else", 6, &keys.broker)),
        ("\"x3\"", b"not a status list".to_vec()),
    ] {
        *served.body.lock().unwrap() = (tag.into(), body);
        assert!(follower.poll_once(&http, &gate, &mut etag).await.is_err());
        assert_eq!(gate.status_version(), Some(1));
        assert_eq!(etag.as_deref(), Some("\"v1\""));
    }

    // A newer verified list replaces the held one.
    *served.body.lock().unwrap() = ("\"v2\"".into(), signed(ISSUER, 2, &keys.broker));
    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(gate.status_version(), Some(2));
    assert_eq!(etag.as_deref(), Some("\"v2\""));
}
