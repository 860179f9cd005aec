//! `StatusFollower` over several brokers: a broker that refuses connections
//! or answers 5xx is passed over for the next one, the poll then sticks to
//! the broker that answered, a 4xx is an answer (no other broker is asked),
//! and a broker serving an older list than the held one never moves the
//! gate back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use support::{status_list, Clock, Keys, AUDIENCE, ISSUER, LIST_URI, T0};
use writ_gate::{FollowMode, GateState, StatusFollower};

/// A fake broker: answers `/v1/status` with `status` (200: `body`).
#[derive(Clone)]
struct FakeBroker {
    status: Arc<AtomicU16>,
    body: Arc<Mutex<Vec<u8>>>,
    hits: Arc<AtomicUsize>,
}

impl FakeBroker {
    fn new(body: Vec<u8>) -> Self {
        FakeBroker {
            status: Arc::new(AtomicU16::new(200)),
            body: Arc::new(Mutex::new(body)),
            hits: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn serve(&self) -> String {
        async fn status(
            axum::extract::State(b): axum::extract::State<FakeBroker>,
        ) -> axum::response::Response {
            b.hits.fetch_add(1, Ordering::SeqCst);
            let code = StatusCode::from_u16(b.status.load(Ordering::SeqCst)).unwrap();
            if code != StatusCode::OK {
                return code.into_response();
            }
            b.body.lock().unwrap().clone().into_response()
        }
        let app = axum::Router::new()
            .route("/v1/status", axum::routing::get(status))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }
}

/// A loopback URL nothing listens on (connection refused).
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn signed(version: u64, keys: &Keys) -> Vec<u8> {
    status_list(ISSUER, version, T0, T0 + 600, [[5u8; 16]])
        .sign(&keys.broker)
        .unwrap()
}

fn follower(brokers: Vec<String>) -> StatusFollower {
    StatusFollower {
        brokers,
        mode: FollowMode::Poll,
        poll_interval: Duration::from_secs(1),
        leeway_secs: 30,
    }
}

#[tokio::test]
async fn dead_and_failing_brokers_are_passed_over_and_the_list_never_goes_back() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let failing = FakeBroker::new(Vec::new());
    failing.answer(503);
    let good = FakeBroker::new(signed(3, &keys));
    let f = follower(vec![dead_url(), failing.serve().await, good.serve().await]);
    let http = reqwest::Client::new();
    let mut etag = None;

    // Connection refused, then 503: the third broker's list is installed.
    f.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(gate.status_version(), Some(3));
    assert_eq!((failing.hits(), good.hits()), (1, 1));

    // The only broker still up serves an older list (version 2): accepted
    // as an answer, but the gate keeps version 3.
    *good.body.lock().unwrap() = signed(2, &keys);
    f.poll_once(&http, &gate, &mut etag).await.unwrap();
    assert_eq!(gate.status_version(), Some(3));

    // Every broker failing is an error naming each, and changes nothing.
    good.answer(500);
    let e = f.poll_once(&http, &gate, &mut etag).await.unwrap_err();
    assert!(e.contains("every broker failed"), "{e}");
    assert_eq!(e.split("; ").count(), 3, "{e}");
    assert_eq!(gate.status_version(), Some(3));
}

#[tokio::test]
async fn a_4xx_is_an_answer_and_no_other_broker_is_asked() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let refusing = FakeBroker::new(Vec::new());
    refusing.answer(404);
    let good = FakeBroker::new(signed(1, &keys));
    let f = follower(vec![refusing.serve().await, good.serve().await]);
    let http = reqwest::Client::new();
    let mut etag = None;

    let e = f.poll_once(&http, &gate, &mut etag).await.unwrap_err();
    assert!(e.contains("404"), "{e}");
    assert_eq!((refusing.hits(), good.hits()), (1, 0));
    assert_eq!(gate.status_version(), None);
}

/// The running follower keeps polling the broker that answered: once the
/// first broker fails, later polls go to the second without asking the
/// first again each time.
#[tokio::test]
async fn the_running_poll_sticks_to_the_broker_that_answered() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let first = FakeBroker::new(signed(1, &keys));
    let second = FakeBroker::new(signed(1, &keys));
    let mut f = follower(vec![first.serve().await, second.serve().await]);
    f.poll_interval = Duration::from_millis(50);
    let task = tokio::spawn(f.run(Arc::clone(&gate)));

    let wait_for = |cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let v2 = signed(2, &keys);
    tokio::task::spawn_blocking({
        let (first, second) = (first.clone(), second.clone());
        let gate = Arc::clone(&gate);
        move || {
            wait_for(&|| gate.status_version() == Some(1));
            first.answer(503);
            *second.body.lock().unwrap() = v2;
            wait_for(&|| gate.status_version() == Some(2));
            let (a, b) = (first.hits(), second.hits());
            wait_for(&|| second.hits() >= b + 5);
            // At most the one poll that was under way when we looked.
            assert!(
                first.hits() <= a + 1,
                "{} polls of the failed broker",
                first.hits() - a
            );
        }
    })
    .await
    .unwrap();
    task.abort();
}

/// The status stream moves past a dead broker to the next one and
/// installs the list its first event carries.
#[tokio::test]
async fn the_stream_moves_past_a_dead_broker() {
    let keys = Keys::new();
    let clock = Clock::at(T0);
    let gate = GateState::new(keys.config(AUDIENCE, 30), clock.now()).unwrap();
    let list = signed(4, &keys);
    let event = verifier_lib::api::governance::StatusEvent {
        uri: LIST_URI.into(),
        version: 4,
        issued_at: T0,
        expires_at: T0 + 600,
        entries: 1,
        url: "/v1/status".into(),
        etag: "\"4\"".into(),
        list: Some(list),
    };
    let body = format!(
        "event: status\ndata: {}\n\n",
        serde_json::to_string(&event).unwrap()
    );
    // Only the stream: this broker's plain `/v1/status` is a 404 (an
    // answer, so the poll does not help here).
    let app = axum::Router::new().route(
        "/v1/status/stream",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut f = follower(vec![dead_url(), format!("http://{addr}")]);
    f.mode = FollowMode::Stream;
    f.poll_interval = Duration::from_secs(3600);
    let task = tokio::spawn(f.run(Arc::clone(&gate)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gate.status_version() != Some(4) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream list not installed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}
