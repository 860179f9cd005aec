//! `StatusFollower` against a local status endpoint: a verified list is
//! installed, a `304` or a stream keep-alive refreshes nothing (freshness is
//! the list's signed `issued_at` / `expires_at`), and a list signed by an
//! unknown key or for another issuer is refused and leaves the cache as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use support::{status_list, Clock, Keys, AUDIENCE, ISSUER, T0};
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
    signed_at(issuer, version, T0, key)
}

/// A list signed at `at`, valid for 600 s.
fn signed_at(issuer: &str, version: u64, at: i64, key: &SigningKey) -> Vec<u8> {
    status_list(issuer, version, at, at + 600, [[5u8; 16]])
        .sign(key)
        .unwrap()
}

/// Present `token` with a fresh proof at the clock's time.
fn admit(gate: &GateState, keys: &Keys, token: &[u8], clock: &Clock) -> Result<(), &'static str> {
    let h =
        writ_workload::request_headers(token, &keys.holder, "POST", "/", b"", clock.get()).unwrap();
    gate.admit("POST", "/", Some(&h[0].1), Some(&h[1].1), b"")
        .map(|_| ())
        .map_err(|d| d.code())
}

#[tokio::test]
async fn poll_installs_verified_lists_and_a_304_confirms_nothing() {
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
        brokers: vec![serve(served.clone()).await],
        mode: FollowMode::Poll,
        poll_interval: Duration::from_secs(1),
        leeway_secs: 30,
    };
    let http = reqwest::Client::new();
    let mut etag = None;

    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(gate.status_version(), Some(1));
    assert_eq!(etag.as_deref(), Some("\"v1\""));

    // The list ages past max_status_age_secs; a 304 confirms nothing.
    clock.advance(40);
    let token = keys.token(AUDIENCE, 1);
    assert_eq!(
        admit(&gate, &keys, &token, &clock),
        Err("status_unavailable")
    );
    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(served.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(
        admit(&gate, &keys, &token, &clock),
        Err("status_unavailable")
    );
    // The same version re-signed now (new ETag) is fresh again.
    *served.body.lock().unwrap() = (
        "\"v1b\"".into(),
        signed_at(ISSUER, 1, clock.get(), &keys.broker),
    );
    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(gate.status_issued_at(), Some(clock.get()));
    assert_eq!(admit(&gate, &keys, &token, &clock), Ok(()));

    // Lists the gate must not trust are refused and change nothing.
    let stranger = SigningKey::generate().unwrap();
    for (tag, body) in [
        ("\"x1\"", signed(ISSUER, 5, &stranger)),
        ("\"x2\"", signed_at(ISSUER, 6, T0 - 1000, &keys.broker)),
        ("\"x3\"", b"not a status list".to_vec()),
    ] {
        *served.body.lock().unwrap() = (tag.into(), body);
        assert!(follower.poll_once(&http, &gate, &mut etag).await.is_err());
        assert_eq!(gate.status_version(), Some(1));
        assert_eq!(etag.as_deref(), Some("\"v1b\""));
    }

    // A newer verified list replaces the held one.
    *served.body.lock().unwrap() = ("\"v2\"".into(), signed(ISSUER, 2, &keys.broker));
    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(gate.status_version(), Some(2));
    assert_eq!(etag.as_deref(), Some("\"v2\""));
}

/// Regression (finding 9): a server that keeps answering `304` after the
/// held list's signed lifetime ended must not keep the gate admitting.
#[tokio::test]
async fn a_server_answering_304_past_the_signed_expiry_leaves_the_gate_stale() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    // A generous age bound: only the list's signed expiry (T0 + 200, before
    // the token's own expiry at T0 + 300) limits it.
    let gate = GateState::new(keys.config(AUDIENCE, 100_000), clock.now()).unwrap();
    let short = status_list(ISSUER, 1, T0, T0 + 200, [[5u8; 16]])
        .sign(&keys.broker)
        .unwrap();
    let served = Served {
        body: Arc::new(Mutex::new(("\"v1\"".into(), short))),
        not_modified: Arc::new(AtomicUsize::new(0)),
    };
    let follower = StatusFollower {
        brokers: vec![serve(served.clone()).await],
        mode: FollowMode::Poll,
        poll_interval: Duration::from_secs(1),
        leeway_secs: 0,
    };
    let http = reqwest::Client::new();
    let mut etag = None;
    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    let token = keys.token(AUDIENCE, 1);
    assert_eq!(admit(&gate, &keys, &token, &clock), Ok(()));
    clock.advance(199);
    follower.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(admit(&gate, &keys, &token, &clock), Ok(()));
    // The signed lifetime ends; the server keeps saying "not modified".
    clock.advance(1);
    for _ in 0..3 {
        follower.poll_once(&http, &gate, &mut etag).await.unwrap();
        assert_eq!(
            admit(&gate, &keys, &token, &clock),
            Err("status_unavailable")
        );
        clock.advance(30);
    }
    assert_eq!(served.not_modified.load(Ordering::SeqCst), 4);
}

/// Keep-alive comments on `/v1/status/stream` are unauthenticated too: a
/// stream that only ever sends them does not refresh an aged list.
#[tokio::test]
async fn stream_keep_alives_refresh_nothing() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let keep_alives = Arc::new(AtomicUsize::new(0));
    let sent = Arc::clone(&keep_alives);
    let list = signed(ISSUER, 1, &keys.broker);
    let app = axum::Router::new()
        .route(
            "/v1/status",
            axum::routing::get(move || {
                let list = list.clone();
                async move { ([(header::ETAG, "\"v1\"")], list).into_response() }
            }),
        )
        .route(
            "/v1/status/stream",
            axum::routing::get(move || {
                let sent = Arc::clone(&sent);
                async move {
                    let body = futures_util::stream::unfold(sent, |sent| async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        sent.fetch_add(1, Ordering::SeqCst);
                        Some((Ok::<_, std::convert::Infallible>(":keep-alive\n\n"), sent))
                    });
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        axum::body::Body::from_stream(body),
                    )
                        .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let follower = StatusFollower {
        brokers: vec![format!("http://{addr}")],
        mode: FollowMode::Stream,
        poll_interval: Duration::from_secs(3600),
        leeway_secs: 0,
    };
    let task = tokio::spawn(follower.run(Arc::clone(&gate)));
    let token = keys.token(AUDIENCE, 1);
    for _ in 0..200 {
        if gate.status_version().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(admit(&gate, &keys, &token, &clock), Ok(()));
    clock.advance(31);
    let before = keep_alives.load(Ordering::SeqCst);
    for _ in 0..300 {
        if keep_alives.load(Ordering::SeqCst) >= before + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(keep_alives.load(Ordering::SeqCst) >= before + 5);
    assert_eq!(
        admit(&gate, &keys, &token, &clock),
        Err("status_unavailable")
    );
    task.abort();
}
