//! The broker's HTTP client (blocking: the attester is a sequential CLI and
//! the TPM context is not shareable across threads anyway).
//!
//! [`BrokerClient`] talks to one broker. [`BrokerPool`] holds a fleet's URL
//! list and runs a whole exchange (challenge → evidence → decision) against
//! one broker at a time: it starts at the broker that answered last, moves
//! to the next one on a connection failure, a timeout or a 5xx, and backs
//! off (exponentially, jittered) after every broker of the list failed once,
//! until the [`RetryPolicy::budget`] is spent. A 4xx is the broker's answer
//! (a refusal is a decision): it is returned at once and never retried
//! elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use verifier_lib::api::ErrorBody;
use verifier_lib::token::KeySet;

/// A failure talking to the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("broker unreachable at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("broker refused {path}: {code}: {message}")]
    Refused {
        path: String,
        status: u16,
        code: String,
        message: String,
        details: Option<serde_json::Value>,
    },
    #[error("broker answered {path} with an unreadable body: {reason}")]
    BadResponse { path: String, reason: String },
    #[error("reading CA certificate {path}: {source}")]
    CaCert {
        path: String,
        source: std::io::Error,
    },
    #[error("building HTTP client: {0}")]
    Build(reqwest::Error),
    /// The broker URL does not parse or is neither `https://` nor `http://`.
    #[error("broker URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    /// `http://` to a broker that is not on this machine: tokens, keys and
    /// evidence would cross the network in the clear.
    #[error(
        "broker URL {url:?}: plain http:// is only allowed to a loopback address; use https://"
    )]
    PlainHttpNotLoopback { url: String },
    /// The connection broke while the answer was being read.
    #[error("broker at {url} dropped the connection during the answer: {source}")]
    Interrupted { url: String, source: reqwest::Error },
    /// A 5xx without a Writ error body (e.g. from a proxy in front of it).
    #[error("broker answered {path} with HTTP {status}")]
    ServerError { path: String, status: u16 },
    /// The broker URL list is empty.
    #[error("no broker URL given")]
    NoBrokers,
    /// Every broker of the list failed (connection, timeout or 5xx) until
    /// the retry budget was spent; `tried` holds each broker's last failure,
    /// in list order.
    #[error("all {} broker(s) failed after {attempts} attempt(s): {}", tried.len(), failure_list(tried))]
    AllBrokersFailed {
        attempts: u32,
        tried: Vec<BrokerFailure>,
    },
}

/// One broker's last failure in [`ClientError::AllBrokersFailed`].
#[derive(Debug)]
pub struct BrokerFailure {
    pub url: String,
    pub error: Box<ClientError>,
}

fn failure_list(tried: &[BrokerFailure]) -> String {
    tried
        .iter()
        .map(|f| format!("{}: {}", f.url, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClientError {
    /// Whether this says the broker failed (connection, timeout, 5xx) rather
    /// than answered: only such errors move a [`BrokerPool`] to the next
    /// broker. A 4xx refusal is an answer.
    pub fn is_broker_failure(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Interrupted { .. }
            | ClientError::ServerError { .. } => true,
            ClientError::Refused { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The error of an exchange run by [`BrokerPool::run`]: a broker failure
/// (try the next broker) or an answer / a local failure (return it).
pub trait BrokerOutcome: Sized {
    /// `Ok(failure)` when this error is a broker failure, else `Err(self)`.
    fn into_broker_failure(self) -> Result<ClientError, Self>;
}

impl BrokerOutcome for ClientError {
    fn into_broker_failure(self) -> Result<ClientError, Self> {
        if self.is_broker_failure() {
            Ok(self)
        } else {
            Err(self)
        }
    }
}

/// Refuse `http://` unless the host is a loopback address (`127.0.0.0/8`,
/// `::1`) or `localhost`.
fn check_scheme(base: &str) -> Result<(), ClientError> {
    let url = reqwest::Url::parse(base).map_err(|_| ClientError::BadUrl {
        url: base.to_owned(),
        reason: "not a URL",
    })?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = match bare.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => host.eq_ignore_ascii_case("localhost"),
            };
            if loopback {
                Ok(())
            } else {
                Err(ClientError::PlainHttpNotLoopback {
                    url: base.to_owned(),
                })
            }
        }
        _ => Err(ClientError::BadUrl {
            url: base.to_owned(),
            reason: "scheme must be https:// (or http:// to a loopback address)",
        }),
    }
}

/// The HTTP client every broker client uses: timeouts of `retry`, the
/// system roots plus `ca_pem`. Building one reads the trust store, so a
/// [`BrokerPool`] builds one for all its brokers.
fn http_client(
    ca_pem: Option<&std::path::Path>,
    retry: &RetryPolicy,
) -> Result<reqwest::blocking::Client, ClientError> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(retry.request_timeout)
        .connect_timeout(retry.connect_timeout);
    if let Some(p) = ca_pem {
        let pem = std::fs::read(p).map_err(|source| ClientError::CaCert {
            path: p.display().to_string(),
            source,
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(ClientError::Build)?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(ClientError::Build)
}

/// A client for one broker.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    base: String,
    http: reqwest::blocking::Client,
    /// Operator bearer token sent with every request, if set.
    operator_token: Option<String>,
}

impl BrokerClient {
    /// `base` is e.g. `https://broker:8443`; `ca_pem` adds a trusted root.
    /// `http://` is refused unless the broker is on a loopback address.
    pub fn new(base: &str, ca_pem: Option<&std::path::Path>) -> Result<Self, ClientError> {
        Self::with_timeouts(base, ca_pem, &RetryPolicy::default())
    }

    /// Like [`BrokerClient::new`], with the connect and request timeouts of
    /// `retry`.
    pub fn with_timeouts(
        base: &str,
        ca_pem: Option<&std::path::Path>,
        retry: &RetryPolicy,
    ) -> Result<Self, ClientError> {
        check_scheme(base)?;
        Ok(Self::over(base, http_client(ca_pem, retry)?))
    }

    /// A client for `base` over an existing HTTP client (its connection
    /// pool, trust roots and timeouts); `base` was checked.
    fn over(base: &str, http: reqwest::blocking::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            operator_token: None,
        }
    }

    /// The broker's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Send `Authorization: Bearer <token>` (an operator token) with every
    /// request: for the broker's operator endpoints.
    pub fn with_operator_token(mut self, token: &str) -> Self {
        self.operator_token = Some(token.to_owned());
        self
    }

    fn authorized(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.operator_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .authorized(self.http.post(&url))
            .json(body)
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        Self::decode(&url, path, resp)
    }

    pub fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .authorized(self.http.get(&url))
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        Self::decode(&url, path, resp)
    }

    /// GET `path` as raw bytes (e.g. the signed status list).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .get(&url)
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .map_err(|source| ClientError::Interrupted { url, source })?;
        if !status.is_success() {
            return Err(unsuccessful(path, status));
        }
        Ok(bytes.to_vec())
    }

    /// The broker's token verification keys (COSE_KeySet).
    pub fn key_set(&self) -> Result<KeySet, ClientError> {
        let url = format!("{}/v1/keys", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .map_err(|source| ClientError::Interrupted { url, source })?;
        if !status.is_success() {
            return Err(unsuccessful("/v1/keys", status));
        }
        KeySet::from_cose_key_set(&bytes).map_err(|e| ClientError::BadResponse {
            path: "/v1/keys".into(),
            reason: e.to_string(),
        })
    }

    fn decode<Resp: DeserializeOwned>(
        url: &str,
        path: &str,
        resp: reqwest::blocking::Response,
    ) -> Result<Resp, ClientError> {
        let status = resp.status();
        let bytes = resp.bytes().map_err(|source| ClientError::Interrupted {
            url: url.to_owned(),
            source,
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
                path: path.into(),
                reason: e.to_string(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(ClientError::Refused {
                path: path.into(),
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
                details: e.error.details,
            }),
            Err(_) => Err(unsuccessful(path, status)),
        }
    }
}

/// The error for a non-success status without a Writ error body.
fn unsuccessful(path: &str, status: reqwest::StatusCode) -> ClientError {
    if status.is_server_error() {
        ClientError::ServerError {
            path: path.into(),
            status: status.as_u16(),
        }
    } else {
        ClientError::BadResponse {
            path: path.into(),
            reason: format!("HTTP {status}"),
        }
    }
}

/// How a [`BrokerPool`] times out, retries and backs off (documented
/// defaults in docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Time to establish a connection to one broker (default 5 s).
    pub connect_timeout: Duration,
    /// Time for one request to one broker, answer included (default 15 s).
    pub request_timeout: Duration,
    /// No new attempt starts once this much time has passed since the
    /// exchange began (default 10 s); every broker is tried at least once,
    /// and an attempt under way may finish up to `request_timeout` later.
    pub budget: Duration,
    /// Pause after the first round in which every broker failed (default
    /// 200 ms); doubled after each further round, jittered (50–100 %).
    pub initial_backoff: Duration,
    /// Longest pause between rounds (default 2 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            budget: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// A broker list's retry policy and which broker answered last (shared by
/// clones, so a daemon's successive exchanges stick to a working broker).
#[derive(Debug, Clone, Default)]
pub struct Failover {
    pub retry: RetryPolicy,
    preferred: Arc<AtomicUsize>,
}

impl Failover {
    pub fn new(retry: RetryPolicy) -> Self {
        Failover {
            retry,
            preferred: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Index (in the URL list) of the broker the next exchange starts with.
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::SeqCst)
    }
}

/// Split a broker list (`URL[,URL...]`, blanks around commas ignored) and
/// check each URL's scheme.
pub fn parse_broker_list(list: &str) -> Result<Vec<String>, ClientError> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    if urls.is_empty() {
        return Err(ClientError::NoBrokers);
    }
    for u in &urls {
        check_scheme(u)?;
    }
    Ok(urls)
}

/// The brokers of one fleet, tried in order (see the module docs).
#[derive(Debug, Clone)]
pub struct BrokerPool {
    brokers: Vec<BrokerClient>,
    failover: Failover,
}

impl BrokerPool {
    /// A pool over `list` (`URL[,URL...]`), each client trusting `ca_pem`.
    pub fn new(
        list: &str,
        ca_pem: Option<&std::path::Path>,
        failover: &Failover,
    ) -> Result<Self, ClientError> {
        let urls = parse_broker_list(list)?;
        let http = http_client(ca_pem, &failover.retry)?;
        let brokers = urls
            .iter()
            .map(|u| BrokerClient::over(u, http.clone()))
            .collect();
        Ok(BrokerPool {
            brokers,
            failover: failover.clone(),
        })
    }

    /// The brokers, in list order.
    pub fn brokers(&self) -> &[BrokerClient] {
        &self.brokers
    }

    /// Run `exchange` against one broker after another, starting with the
    /// one that answered last, until one answers (success, or an error that
    /// is not a broker failure: a refusal, a TPM error, ...) or the retry
    /// budget is spent. `exchange` must be the whole exchange, from a fresh
    /// challenge on: evidence is bound to one broker's single-use nonce and
    /// is never re-sent elsewhere.
    pub fn run<T, E>(&self, mut exchange: impl FnMut(&BrokerClient) -> Result<T, E>) -> Result<T, E>
    where
        E: BrokerOutcome + From<ClientError>,
    {
        let n = self.brokers.len();
        let retry = &self.failover.retry;
        let started = Instant::now();
        let first = self.failover.preferred() % n.max(1);
        let mut last: Vec<Option<ClientError>> = (0..n).map(|_| None).collect();
        let mut backoff = retry.initial_backoff;
        let mut attempts: u32 = 0;
        loop {
            let i = (first + attempts as usize) % n.max(1);
            let Some(broker) = self.brokers.get(i) else {
                return Err(ClientError::NoBrokers.into());
            };
            attempts += 1;
            let failure = match exchange(broker).map_err(E::into_broker_failure) {
                Ok(v) => {
                    self.failover.preferred.store(i, Ordering::SeqCst);
                    return Ok(v);
                }
                Err(Ok(failure)) => failure,
                // The broker answered (a refusal is a decision) or the
                // failure is local: stay with this broker, return it.
                Err(Err(answer)) => {
                    self.failover.preferred.store(i, Ordering::SeqCst);
                    return Err(answer);
                }
            };
            report_failure(broker.url(), &failure);
            if let Some(slot) = last.get_mut(i) {
                *slot = Some(failure);
            }
            let round_done = attempts as usize % n == 0;
            let elapsed = started.elapsed();
            if attempts as usize >= n && elapsed >= retry.budget {
                let tried = self
                    .brokers
                    .iter()
                    .zip(last)
                    .filter_map(|(b, e)| {
                        e.map(|e| BrokerFailure {
                            url: b.url().to_owned(),
                            error: Box::new(e),
                        })
                    })
                    .collect();
                return Err(ClientError::AllBrokersFailed { attempts, tried }.into());
            }
            if round_done {
                let pause = jittered_half(backoff).min(retry.budget.saturating_sub(elapsed));
                std::thread::sleep(pause);
                backoff = (backoff * 2).min(retry.max_backoff);
            }
        }
    }
}

/// One stderr line per failed attempt: which broker and why.
fn report_failure(url: &str, failure: &ClientError) {
    eprintln!("writ-attester: broker {url} failed ({failure}); trying the next broker");
}

/// A random duration in `[d/2, d]`.
fn jittered_half(d: Duration) -> Duration {
    let mut r = [0u8; 2];
    // Without randomness the pause is simply `d`.
    let unit = match aws_lc_rs::rand::fill(&mut r) {
        Ok(()) => f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    };
    d.mul_f64(0.5 + 0.5 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 8: plain http only to this machine.
    #[test]
    fn finding8_plain_http_only_to_loopback() {
        for ok in [
            "https://broker.example:8443",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:80/",
            "http://localhost:8080",
        ] {
            assert!(BrokerClient::new(ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "http://broker.example:8080",
            "http://10.0.0.1",
            "http://[2001:db8::1]",
            "http://localhost.evil.example",
        ] {
            assert!(
                matches!(
                    BrokerClient::new(bad, None),
                    Err(ClientError::PlainHttpNotLoopback { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            BrokerClient::new("ftp://broker", None),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            BrokerClient::new("not a url", None),
            Err(ClientError::BadUrl { .. })
        ));
    }
}

#[cfg(test)]
mod failover_tests {
    use std::cell::RefCell;

    use super::*;

    const LIST: &str = "http://127.0.0.1:1, http://127.0.0.2:1,http://127.0.0.3:1/";

    fn pool(budget_ms: u64) -> BrokerPool {
        let retry = RetryPolicy {
            budget: Duration::from_millis(budget_ms),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(40),
            ..RetryPolicy::default()
        };
        BrokerPool::new(LIST, None, &Failover::new(retry)).unwrap()
    }

    fn refused(status: u16) -> ClientError {
        ClientError::Refused {
            path: "/v1/tokens".into(),
            status,
            code: "code".into(),
            message: "message".into(),
            details: None,
        }
    }

    #[test]
    fn list_parses_and_every_url_is_checked() {
        assert_eq!(
            parse_broker_list(LIST).unwrap(),
            [
                "http://127.0.0.1:1",
                "http://127.0.0.2:1",
                "http://127.0.0.3:1"
            ]
        );
        assert!(matches!(
            parse_broker_list(" , "),
            Err(ClientError::NoBrokers)
        ));
        assert!(matches!(
            parse_broker_list("http://127.0.0.1:1,http://broker.example"),
            Err(ClientError::PlainHttpNotLoopback { .. })
        ));
    }

    /// A 5xx moves to the next broker; the broker that answered is where
    /// the next exchange starts.
    #[test]
    fn server_errors_move_on_and_the_answering_broker_sticks() {
        let p = pool(1_000);
        let calls = RefCell::new(Vec::new());
        let got = p.run(|b| {
            calls.borrow_mut().push(b.url().to_owned());
            match b.url() {
                "http://127.0.0.1:1" => Err(refused(503)),
                "http://127.0.0.2:1" => Err(ClientError::ServerError {
                    path: "/v1/tokens".into(),
                    status: 502,
                }),
                _ => Ok(7),
            }
        });
        assert_eq!(got.unwrap(), 7);
        assert_eq!(calls.borrow().len(), 3);
        calls.borrow_mut().clear();
        p.run(|b| {
            calls.borrow_mut().push(b.url().to_owned());
            Ok::<_, ClientError>(())
        })
        .unwrap();
        assert_eq!(*calls.borrow(), ["http://127.0.0.3:1"]);
    }

    /// A refusal (4xx) is a decision: returned as it is, no other broker
    /// is asked.
    #[test]
    fn a_refusal_is_never_shopped_to_another_broker() {
        let p = pool(1_000);
        let mut calls = 0;
        let got: Result<(), _> = p.run(|_| {
            calls += 1;
            Err(refused(403))
        });
        assert_eq!(calls, 1);
        assert!(matches!(got, Err(ClientError::Refused { status: 403, .. })));
    }

    /// Every broker failing ends, once the budget is spent, in one typed
    /// error naming each broker's last failure; with no budget, each broker
    /// is still tried once.
    #[test]
    fn all_brokers_failing_is_typed_and_bounded_by_the_budget() {
        let p = pool(0);
        let mut calls = 0;
        let got: Result<(), _> = p.run(|_| {
            calls += 1;
            Err(refused(500))
        });
        assert_eq!(calls, 3);
        match got {
            Err(ClientError::AllBrokersFailed { attempts, tried }) => {
                assert_eq!(attempts, 3);
                let urls: Vec<&str> = tried.iter().map(|f| f.url.as_str()).collect();
                assert_eq!(
                    urls,
                    [
                        "http://127.0.0.1:1",
                        "http://127.0.0.2:1",
                        "http://127.0.0.3:1"
                    ]
                );
                assert!(tried
                    .iter()
                    .all(|f| matches!(*f.error, ClientError::Refused { status: 500, .. })));
            }
            other => panic!("expected AllBrokersFailed, got {other:?}"),
        }

        let p = pool(150);
        let started = Instant::now();
        let mut calls = 0;
        let got: Result<(), _> = p.run(|_| {
            calls += 1;
            Err(refused(503))
        });
        let took = started.elapsed();
        assert!(matches!(got, Err(ClientError::AllBrokersFailed { .. })));
        // Rounds of three with 10–40 ms pauses between them, until no
        // budget is left for another attempt.
        assert!(calls > 3, "{calls} attempts");
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
