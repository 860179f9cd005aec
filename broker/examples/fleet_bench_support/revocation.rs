//! Revocation propagation between brokers: a token revoked through one
//! broker's operator API, timed until another broker's
//! `/v1/status/stream` pushes a signed list (verified under the fleet's
//! key set) that lists it.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use verifier_lib::api::governance::StatusEvent;
use verifier_lib::status::ListCheck;
use verifier_lib::token::{Expectations, KeySet, StatusRef, TokenVerifier};

/// Longest wait for one revocation to show on one stream.
const WAIT: Duration = Duration::from_secs(5);

/// Events of one broker's status stream, each with when it arrived.
pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<(Instant, StatusEvent)>,
}

/// Subscribe to `base`'s `/v1/status/stream` (Server-Sent Events).
pub async fn subscribe(base: &str) -> Subscriber {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/status/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "status stream of {base}");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut resp = resp;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if let Ok(ev) = serde_json::from_str::<StatusEvent>(&data) {
                    if tx.send((at, ev)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Subscriber { rx }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Per revocation: the revoking broker's answer time, and per watcher the
/// time from sending the revocation to its stream listing the token (ms;
/// `None` when it did not within [`WAIT`]).
pub struct Propagation {
    pub ack_ms: Vec<f64>,
    pub seen_ms: Vec<Vec<Option<f64>>>,
}

/// Revoke each of `minted` (token id, token) through `revoker`, one at a
/// time, and time its arrival on every watcher's stream: the first signed
/// list there whose entry at the token's `status` index reads revoked.
pub async fn measure(
    revoker: &str,
    operator_token: &str,
    watchers: &mut [Subscriber],
    minted: &[(String, Vec<u8>)],
    keys: &KeySet,
    issuer: &str,
) -> Propagation {
    let http = reqwest::Client::new();
    let verifier = TokenVerifier::new(keys.clone(), Expectations::any_audience(issuer));
    let mut out = Propagation {
        ack_ms: Vec::new(),
        seen_ms: vec![Vec::new(); watchers.len()],
    };
    for (cti, token) in minted {
        let status = verifier
            .verify(token, unix_now())
            .unwrap()
            .claims
            .status
            .expect("every token carries a status claim");
        for w in watchers.iter_mut() {
            while w.rx.try_recv().is_ok() {}
        }
        let sent = Instant::now();
        let r = http
            .post(format!("{revoker}/v1/tokens/{cti}/revoke"))
            .bearer_auth(operator_token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "revoke: {}",
            r.text().await.unwrap()
        );
        out.ack_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        for (w, seen) in watchers.iter_mut().zip(out.seen_ms.iter_mut()) {
            seen.push(wait_listed(w, &status, sent, keys).await);
        }
        // Not in step with any broker's periodic work.
        tokio::time::sleep(Duration::from_millis(113)).await;
    }
    out
}

async fn wait_listed(
    w: &mut Subscriber,
    status: &StatusRef,
    sent: Instant,
    keys: &KeySet,
) -> Option<f64> {
    let deadline = sent + WAIT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (at, ev) = tokio::time::timeout(left, w.rx.recv()).await.ok()??;
        let Some(bytes) = ev.list else { continue };
        let listed = verifier_lib::status::verify(&bytes, keys, ListCheck::at(unix_now(), 60))
            .and_then(|l| l.status_of(Some(status)))
            .is_ok_and(|s| s != 0);
        if listed {
            return Some((at - sent).as_secs_f64() * 1e3);
        }
    }
}
