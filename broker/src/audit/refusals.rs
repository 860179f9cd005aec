//! Coalesced refusals: unauthenticated refusals (a junk `enroll/start`) do
//! not each cost an fsync'd audit leaf. Refusals from one source within a
//! window (`audit.refusal_window_secs`) become one refused `enrollment` leaf
//! whose host is `refusals:<source digest>` and whose reason summarises the
//! window (count, codes, first and last time), written when the window
//! closes or at shutdown. The source digest is a SHA-256 of the peer
//! address under a salt drawn at start, so the log holds no raw addresses
//! (and digests do not link across restarts).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use verifier_lib::audit::Leaf;
use verifier_lib::crypto::HashAlg;

use super::AuditLog;
use crate::clock::Clock;
use crate::store::audit::StateChange;

/// Most sources tracked at once; beyond it refusals share one window.
const MAX_SOURCES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    first: i64,
    last: i64,
    count: u64,
    codes: BTreeMap<String, u64>,
}

/// Open refusal windows, by source.
#[derive(Debug)]
pub struct RefusalLog {
    window_secs: i64,
    salt: [u8; 32],
    open: Mutex<HashMap<Option<IpAddr>, Window>>,
}

impl RefusalLog {
    pub fn new(window_secs: u64) -> Self {
        let mut salt = [0u8; 32];
        // Without randomness the digests are merely unsalted.
        let _ = aws_lc_rs::rand::fill(&mut salt);
        Self {
            window_secs: i64::try_from(window_secs).unwrap_or(i64::MAX),
            salt,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Count a refusal with `code` from `source` (`None`: unknown peer).
    pub fn record(&self, source: Option<IpAddr>, code: &str, now: i64) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if open.len() >= MAX_SOURCES && !open.contains_key(&source) {
            None
        } else {
            source
        };
        let w = open.entry(key).or_insert_with(|| Window {
            first: now,
            last: now,
            count: 0,
            codes: BTreeMap::new(),
        });
        w.last = w.last.max(now);
        w.count = w.count.saturating_add(1);
        let n = w.codes.entry(code.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Take the windows that closed by `now` (all of them with `all`) as
    /// summary leaves.
    pub fn take_closed(&self, now: i64, all: bool) -> Vec<Leaf> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let closed: Vec<Option<IpAddr>> = open
            .iter()
            .filter(|(_, w)| all || now >= w.first.saturating_add(self.window_secs))
            .map(|(k, _)| *k)
            .collect();
        closed
            .into_iter()
            .filter_map(|k| open.remove(&k).map(|w| self.leaf(k, &w, now)))
            .collect()
    }

    fn source_digest(&self, source: Option<IpAddr>) -> String {
        let addr = source
            .map(|ip| ip.to_canonical().to_string())
            .unwrap_or_default();
        let d = HashAlg::Sha256.digest(&[self.salt.as_slice(), addr.as_bytes()].concat());
        hex::encode(d.get(..16).unwrap_or(&d))
    }

    fn leaf(&self, source: Option<IpAddr>, w: &Window, now: i64) -> Leaf {
        let codes: Vec<String> = w.codes.iter().map(|(c, n)| format!("{c}x{n}")).collect();
        super::leaves::enrollment(
            &format!("refusals:{}", self.source_digest(source)),
            false,
            None,
            Vec::new(),
            Some(&format!(
                "{} refusals from {} to {}: {}",
                w.count,
                w.first,
                w.last,
                codes.join(", ")
            )),
            now,
        )
    }

    /// Write the closed windows' leaves (all windows with `all`) in one
    /// append; returns how many leaves were written.
    pub async fn flush(&self, log: &AuditLog, now: i64, all: bool) -> usize {
        let leaves = self.take_closed(now, all);
        let n = leaves.len();
        if n > 0 {
            if let Err(e) = log.append(StateChange::Nothing, leaves).await {
                tracing::error!(error = %e, "could not log coalesced refusals in the audit log");
            }
        }
        n
    }
}

/// Flush closed windows every second until the runtime stops.
pub fn spawn_flusher(refusals: Arc<RefusalLog>, log: AuditLog, clock: Arc<dyn Clock>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            refusals.flush(&log, clock.now(), false).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier_lib::audit::Decision;

    #[test]
    fn finding3_refusals_from_one_source_coalesce_per_window() {
        let r = RefusalLog::new(60);
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        for i in 0..400 {
            r.record(
                a,
                if i % 2 == 0 {
                    "invalid_ek_cert"
                } else {
                    "ek_cert_untrusted"
                },
                100 + i / 10,
            );
        }
        r.record(b, "invalid_ek_cert", 130);
        assert!(r.take_closed(159, false).is_empty());
        let leaves = r.take_closed(160, false);
        assert_eq!(leaves.len(), 1);
        let Decision::Enrollment {
            host,
            accepted,
            reason,
            ..
        } = &leaves[0].decision
        else {
            panic!("{:?}", leaves[0]);
        };
        assert!(!accepted);
        assert!(
            host.starts_with("refusals:") && !host.contains("192.0.2"),
            "{host}"
        );
        assert_eq!(
            reason.as_deref(),
            Some("400 refusals from 100 to 139: ek_cert_untrustedx200, invalid_ek_certx200")
        );
        // b's window is still open; shutdown flushes it.
        assert_eq!(r.take_closed(161, true).len(), 1);
        assert!(r.take_closed(1000, true).is_empty());
    }
}
