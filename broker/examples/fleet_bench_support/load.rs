//! The focused concurrent client of the fleet benchmark (not the load
//! generator of issue #15): C tokio tasks, each with its own kept-alive
//! HTTP client bound to its own 127.0.0.x source address, each looping
//! challenge → signed report → token against one broker (round robin over
//! the brokers), over the guests in turn.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::guests::Guest;

/// The first source address of the clients: client i binds 127.0.0.(10+i).
pub const FIRST_SOURCE: u8 = 10;

/// A refused challenge is retried after this pause (no busy loop).
const BACKOFF: Duration = Duration::from_millis(20);

/// What one run of the load produced.
#[derive(Default)]
pub struct LoadStats {
    /// Token responses 200 completed inside the window.
    pub tokens: u64,
    /// Latency of each of those token requests (the appraisal), µs.
    pub token_us: Vec<u32>,
    /// Latency of each whole cycle (challenge + report + token), µs.
    pub cycle_us: Vec<u32>,
    /// Refusals and failures: "challenge 429 rate_limited" → count.
    pub errors: BTreeMap<String, u64>,
    /// Client CPU time spent signing reports (the guests' work), summed.
    pub signing: Duration,
    /// A few minted tokens (id in base64url, token bytes), for the
    /// revocation measurement.
    pub minted: Vec<(String, Vec<u8>)>,
}

impl LoadStats {
    fn merge(&mut self, o: LoadStats) {
        self.tokens += o.tokens;
        self.token_us.extend(o.token_us);
        self.cycle_us.extend(o.cycle_us);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.signing += o.signing;
        self.minted.extend(o.minted);
    }
}

/// Percentile `p` (0..=100) of `v` in ms, nearest rank; sorts `v`.
pub fn percentile_ms(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    f64::from(v[rank.clamp(1, v.len()) - 1]) / 1000.0
}

/// One client per task: an HTTP client with keep-alive on its own source
/// address, and the broker it talks to.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    index: usize,
}

/// `count` clients spread round robin over `brokers` (base URLs).
pub fn clients(count: usize, brokers: &[String]) -> Vec<Client> {
    (0..count)
        .map(|i| {
            let last = u8::try_from(usize::from(FIRST_SOURCE) + i).unwrap();
            let http = reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
                .pool_max_idle_per_host(4)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            Client {
                http,
                base: brokers[i % brokers.len()].clone(),
                index: i,
            }
        })
        .collect()
}

async fn post(c: &Client, path: &str, body: &Value) -> Result<(u16, Value), String> {
    let r = c
        .http
        .post(format!("{}{path}", c.base))
        .json(body)
        .send()
        .await
        .map_err(|e| format!("transport: {}", short(&e)))?;
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(Value::Null);
    Ok((status, v))
}

fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    }
}

fn refusal(step: &str, status: u16, v: &Value) -> String {
    let code = v["error"]["code"].as_str().unwrap_or("-");
    format!("{step} {status} {code}")
}

fn b64d(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_default()
}

/// One client's loop until `end`: only cycles completed by `end` count.
async fn drive(c: Client, guests: Arc<Vec<Guest>>, stride: usize, end: Instant) -> LoadStats {
    let mut st = LoadStats::default();
    let mut g = c.index % guests.len();
    while Instant::now() < end {
        let guest = &guests[g];
        g = (g + stride) % guests.len();
        let cycle = Instant::now();
        let (s, v) = match post(&c, "/v1/snp/challenge", &json!({"host_id": guest.host_id})).await {
            Ok(r) => r,
            Err(e) => {
                *st.errors.entry(format!("challenge {e}")).or_default() += 1;
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        if s != 200 {
            *st.errors.entry(refusal("challenge", s, &v)).or_default() += 1;
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let nonce = b64d(v["nonce"].as_str().unwrap_or(""));
        let signing = Instant::now();
        let req = guest.token_request(nonce);
        st.signing += signing.elapsed();
        let body = serde_json::to_value(&req).unwrap();
        let sent = Instant::now();
        let r = post(&c, "/v1/snp/tokens", &body).await;
        let done = Instant::now();
        if done > end {
            break;
        }
        match r {
            Ok((200, v)) => {
                st.tokens += 1;
                st.token_us.push(micros(done - sent));
                st.cycle_us.push(micros(done - cycle));
                if st.minted.len() < 4 {
                    if let (Some(cti), Some(token)) = (v["cti"].as_str(), v["token"].as_str()) {
                        st.minted.push((cti.to_owned(), b64d(token)));
                    }
                }
            }
            Ok((s, v)) => *st.errors.entry(refusal("token", s, &v)).or_default() += 1,
            Err(e) => *st.errors.entry(format!("token {e}")).or_default() += 1,
        }
    }
    st
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Run every client for `secs`; the merged stats.
pub async fn run(clients: &[Client], guests: &Arc<Vec<Guest>>, secs: f64) -> LoadStats {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| tokio::spawn(drive(c.clone(), Arc::clone(guests), clients.len(), end)))
        .collect();
    let mut all = LoadStats::default();
    for t in tasks {
        all.merge(t.await.unwrap());
    }
    all
}
