//! Request bounds of the router: a per-source token bucket on the endpoints
//! that write or cost (`429 rate_limited` with `Retry-After`), a whole-request
//! timeout (`408 request_timeout`) and the status-stream slots
//! (`503 stream_capacity`). Connection-level bounds (header timeout,
//! connection cap) live in `crate::server`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::config::LimitsConfig;

/// Token buckets keyed by source: an IPv4 address, or the /64 of an IPv6
/// address (one host usually holds a whole /64).
#[derive(Debug)]
pub struct SourceLimiter {
    per_sec: f64,
    burst: f64,
    max_sources: usize,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_source: HashMap<IpAddr, Bucket>,
    /// Shared by new sources while `by_source` is full of busy ones.
    overflow: Bucket,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            refilled: now,
        }
    }

    /// Refill, then take one token or say how long until one is there.
    fn take(&mut self, per_sec: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }

    /// Would be full again by `now` (so forgetting it changes nothing).
    fn idle(&self, per_sec: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens + elapsed * per_sec >= burst
    }
}

/// The limiter key of a peer address.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

impl SourceLimiter {
    pub fn new(limits: &LimitsConfig) -> Self {
        let burst = f64::from(limits.per_source_burst.max(1));
        Self {
            per_sec: f64::from(limits.per_source_per_sec.max(1)),
            burst,
            max_sources: limits.max_sources.max(1),
            buckets: Mutex::new(Buckets {
                by_source: HashMap::new(),
                overflow: Bucket::full(burst, Instant::now()),
            }),
        }
    }

    /// Take one request from `ip`'s bucket; `Err` carries the wait until
    /// the next one is allowed.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let (per_sec, burst) = (self.per_sec, self.burst);
        let key = source_key(ip);
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !b.by_source.contains_key(&key) && b.by_source.len() >= self.max_sources {
            b.by_source
                .retain(|_, bucket| !bucket.idle(per_sec, burst, now));
        }
        if b.by_source.contains_key(&key) || b.by_source.len() < self.max_sources {
            b.by_source
                .entry(key)
                .or_insert_with(|| Bucket::full(burst, now))
                .take(per_sec, burst, now)
        } else {
            b.overflow.take(per_sec, burst, now)
        }
    }

    /// Sources tracked now (for tests and logs).
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_source
            .len()
    }
}

/// Middleware: rate-limit by the peer address the server recorded
/// (`ConnectInfo`). A router served without it (in-process tests,
/// embedding) has no peer to key on and is not limited.
pub async fn rate_limit(
    State(limiter): State<Arc<SourceLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(ip) = super::source::Source::of(req.extensions()) {
        if let Err(wait) = limiter.check(ip, Instant::now()) {
            let secs = wait.as_secs().saturating_add(1);
            tracing::debug!(%ip, retry_after = secs, "rate limited");
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address; retry later",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
    }
    next.run(req).await
}

/// Middleware: answer `408 request_timeout` when the handler (reading the
/// body included) takes longer than the configured request timeout.
pub async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request took too long",
        )
        .into_response(),
    }
}

/// The status-stream slots: a subscriber holds one for the life of its
/// stream.
#[derive(Debug, Clone)]
pub struct StreamSlots(Arc<Semaphore>);

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max)))
    }

    /// A slot, or [`StreamCapacity`] when all are taken.
    pub fn acquire(&self) -> Result<OwnedSemaphorePermit, StreamCapacity> {
        Arc::clone(&self.0)
            .try_acquire_owned()
            .map_err(|_| StreamCapacity)
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// Every status-stream slot is taken: `503 stream_capacity`, `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCapacity;

impl IntoResponse for StreamCapacity {
    fn into_response(self) -> Response {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stream_capacity",
            "too many status stream subscribers; poll /v1/status or retry later",
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_sec: u32, burst: u32, max_sources: usize) -> SourceLimiter {
        SourceLimiter::new(&LimitsConfig {
            per_source_per_sec: per_sec,
            per_source_burst: burst,
            max_sources,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let l = limiter(2, 3, 10);
        let ip: IpAddr = [127, 0, 0, 9].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(ip, t0), Ok(()));
        }
        let wait = l.check(ip, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        // Another source is not affected.
        assert_eq!(l.check([127, 0, 0, 10].into(), t0), Ok(()));
        // Half a second later one token (at 2/s) is back, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.check(ip, t1), Ok(()));
        assert!(l.check(ip, t1).is_err());
    }

    #[test]
    fn ipv6_sources_share_their_slash_64_and_mapped_v4_is_v4() {
        let l = limiter(1, 1, 10);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(l.check(a, t0), Ok(()));
        assert!(l.check(b, t0).is_err());
        assert_eq!(l.check("2001:db8:1:3::1".parse().unwrap(), t0), Ok(()));
        assert_eq!(l.check("::ffff:10.0.0.1".parse().unwrap(), t0), Ok(()));
        assert!(l.check([10, 0, 0, 1].into(), t0).is_err());
    }

    #[test]
    fn source_map_is_bounded_and_overflow_shares_one_bucket() {
        let l = limiter(1, 2, 2);
        let t0 = Instant::now();
        assert_eq!(l.check([10, 0, 0, 1].into(), t0), Ok(()));
        assert_eq!(l.check([10, 0, 0, 2].into(), t0), Ok(()));
        // Map full of busy sources: newcomers share the overflow bucket.
        assert_eq!(l.check([10, 0, 0, 3].into(), t0), Ok(()));
        assert_eq!(l.check([10, 0, 0, 4].into(), t0), Ok(()));
        assert!(l.check([10, 0, 0, 5].into(), t0).is_err());
        assert_eq!(l.tracked(), 2);
        // Once the tracked sources are idle (full again) they are dropped.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.check([10, 0, 0, 5].into(), later), Ok(()));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn stream_slots_refuse_beyond_the_cap_and_free_on_drop() {
        let slots = StreamSlots::new(2);
        let a = slots.acquire().unwrap();
        let _b = slots.acquire().unwrap();
        let refused = slots.acquire().unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        drop(a);
        assert_eq!(slots.available(), 1);
        assert!(slots.acquire().is_ok());
    }
}
