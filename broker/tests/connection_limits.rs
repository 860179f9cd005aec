//! The broker's connection and request bounds over real loopback sockets
//! (`writ_broker::server::serve_connections`): slow header senders are cut
//! off while others are served, connections beyond the cap are closed,
//! status streams beyond their cap get `503 stream_capacity`, and bursts
//! beyond the per-source rate get `429 rate_limited` with `Retry-After`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;

/// Every wait in this file is bounded by this.
const STEP: Duration = Duration::from_secs(10);

async fn broker(tweak: impl FnOnce(&mut Config)) -> (tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "id = \"t\"\n").unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}", dir.path().join("w.db").display());
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    tweak(&mut cfg);
    let limits = cfg.limits.clone();
    let state = writ_broker::server::build_state(cfg, Arc::new(OffsetClock::default()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = writ_broker::app(state);
    tokio::spawn(async move {
        writ_broker::server::serve_connections(
            listener,
            app,
            None,
            &limits,
            std::future::pending(),
        )
        .await;
    });
    (dir, addr)
}

/// Connect from a chosen loopback source address.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::from(source), 0)).unwrap();
    tokio::time::timeout(STEP, sock.connect(to))
        .await
        .unwrap()
        .unwrap()
}

/// The whole answer to one request sent on a fresh connection
/// (`Connection: close`).
async fn exchange(source: [u8; 4], to: SocketAddr, request: &str) -> String {
    let mut s = connect_from(source, to).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut buf))
        .await
        .expect("answer within the step")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
}

fn post_json(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: broker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Read until the peer closes, or give up after `limit`. `Some(elapsed)` when
/// it closed (EOF or reset).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_senders_are_cut_off_while_others_are_served() {
    let (_dir, addr) = broker(|c| {
        c.limits.header_read_timeout_secs = 1;
        c.limits.max_connections = 200;
    })
    .await;
    const ATTACKERS: usize = 60;
    let request = get("/healthz");
    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        let mut s = connect_from([127, 0, 1, 1 + (i % 200) as u8], addr).await;
        let bytes = request.clone().into_bytes();
        attackers.push(tokio::spawn(async move {
            let start = Instant::now();
            // One byte every 100 ms: the headers would take seconds.
            for b in bytes.iter().take(60) {
                if s.write_all(&[*b]).await.is_err() {
                    return Some(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if start.elapsed() > STEP {
                    return None;
                }
            }
            closed_within(&mut s, STEP).await.map(|_| start.elapsed())
        }));
    }
    // Also a connection that never sends a byte.
    let mut silent = connect_from([127, 0, 1, 250], addr).await;

    // During the attack a well-behaved client is answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let ok = exchange([127, 0, 0, 1], addr, &get("/healthz")).await;
        assert_eq!(status_of(&ok), 200, "{ok}");
        let unknown = exchange(
            [127, 0, 0, 1],
            addr,
            &post_json("/v1/challenge", r#"{"host_id":"no-such-host"}"#),
        )
        .await;
        assert_eq!(status_of(&unknown), 404, "{unknown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for a in attackers {
        let cut = a.await.unwrap().expect("slow sender cut off");
        assert!(
            cut < Duration::from_secs(4),
            "slow sender kept its connection {cut:?}"
        );
    }
    let cut = closed_within(&mut silent, STEP)
        .await
        .expect("silent connection closed");
    assert!(
        cut < Duration::from_secs(3),
        "silent connection kept {cut:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let (_dir, addr) = broker(|c| {
        c.limits.header_read_timeout_secs = 5;
        c.limits.max_connections = 4;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 1], addr).await);
    }
    // Give the server time to accept the four.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect_from([127, 0, 0, 1], addr).await;
    let _ = extra.write_all(get("/healthz").as_bytes()).await;
    let cut = closed_within(&mut extra, STEP)
        .await
        .expect("connection beyond the cap closed");
    assert!(
        cut < Duration::from_secs(2),
        "extra connection kept {cut:?}"
    );

    // Once the held connections go, new ones are served again.
    drop(held);
    let deadline = Instant::now() + STEP;
    loop {
        let mut s = connect_from([127, 0, 0, 1], addr).await;
        let _ = s.write_all(get("/healthz").as_bytes()).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(STEP, s.read_to_end(&mut buf)).await;
        if String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Open a status stream; the status code and, for a 200, the open stream.
async fn subscribe(addr: SocketAddr) -> (u16, String, TcpStream) {
    let mut s = connect_from([127, 0, 0, 1], addr).await;
    s.write_all(
        b"GET /v1/status/stream HTTP/1.1\r\nHost: broker\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let start = Instant::now();
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
        let n = tokio::time::timeout_at((start + STEP).into(), s.read(&mut chunk))
            .await
            .expect("stream answered")
            .unwrap();
        assert!(n > 0, "closed before the headers");
        buf.extend_from_slice(&chunk[..n]);
    }
    // For a refusal, the rest of the (small) JSON body.
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = status_of(&text);
    if code != 200 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(STEP, s.read_to_end(&mut rest)).await;
        return (code, format!("{text}{}", String::from_utf8_lossy(&rest)), s);
    }
    (code, text, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_streams_beyond_the_cap_get_503_and_slots_come_back() {
    let (_dir, addr) = broker(|c| {
        c.limits.max_status_streams = 3;
        c.status.stream_max_secs = 3;
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let (code, text, s) = subscribe(addr).await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(header_of(&text, "content-type"), Some("text/event-stream"));
        streams.push(s);
    }
    let refusals_from = Instant::now();
    for _ in 0..5 {
        let (code, text, _) = subscribe(addr).await;
        assert_eq!(code, 503, "{text}");
        assert!(text.contains("stream_capacity"), "{text}");
        assert!(header_of(&text, "retry-after").is_some(), "{text}");
    }
    assert!(
        refusals_from.elapsed() < Duration::from_secs(2),
        "refusals took {:?}: the served streams may have ended meanwhile",
        refusals_from.elapsed()
    );
    // The served subscribers still get their events; their streams end after
    // `status.stream_max_secs`, which frees the slots.
    for s in &mut streams {
        closed_within(s, STEP)
            .await
            .expect("stream closed after stream_max_secs");
    }
    let deadline = Instant::now() + STEP;
    loop {
        let (code, _, _) = subscribe(addr).await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_per_source_rate_gets_429_with_retry_after() {
    let (_dir, addr) = broker(|c| {
        c.limits.per_source_per_sec = 1;
        c.limits.per_source_burst = 5;
    })
    .await;
    let challenge = post_json("/v1/challenge", r#"{"host_id":"no-such-host"}"#);
    let mut codes = Vec::new();
    for _ in 0..8 {
        let a = exchange([127, 0, 0, 2], addr, &challenge).await;
        if status_of(&a) == 429 {
            assert!(a.contains("rate_limited"), "{a}");
            let wait: u64 = header_of(&a, "retry-after")
                .expect("Retry-After")
                .parse()
                .unwrap();
            assert!((1..=2).contains(&wait), "Retry-After {wait}");
        }
        codes.push(status_of(&a));
    }
    // The burst passes (unknown host: 404), then the bucket is empty (one
    // token per second may come back while the loop runs).
    assert_eq!(&codes[..5], &[404; 5], "{codes:?}");
    assert!(codes[5..].contains(&429), "{codes:?}");
    // Another endpoint that writes shares the bucket of the same source.
    let enroll = exchange([127, 0, 0, 2], addr, &post_json("/v1/enroll/start", "{}")).await;
    assert_eq!(status_of(&enroll), 429, "{enroll}");
    // Reads are not limited, and another source has its own bucket.
    let health = exchange([127, 0, 0, 2], addr, &get("/healthz")).await;
    assert_eq!(status_of(&health), 200, "{health}");
    let other = exchange([127, 0, 0, 3], addr, &challenge).await;
    assert_eq!(status_of(&other), 404, "{other}");
    // After the advertised wait the source is served again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = exchange([127, 0, 0, 2], addr, &challenge).await;
    assert_eq!(status_of(&again), 404, "{again}");
}
