//! The daemon's warm path: one key and one token per (workload, program
//! digest) prepared ahead and handed to every launch of that program until
//! [`crate::daemon::DaemonSection::renew_fraction`] of the token's lifetime
//! has passed (a renewal thread replaces used ones before then), plus the
//! signed status lists that show each handed-out token unrevoked and the
//! broker key set they are verified with.
//!
//! Revocation wins: a token is handed out only with a status list, verified
//! under the pinned keys, in which its entry is VALID; the held list is used
//! for at most `status_max_age` after the broker last served it, then fetched
//! again first. A token found revoked is dropped from the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use verifier_lib::token::{KeySet, StatusRef};

use crate::client::BrokerPool;
use crate::revocation::{self, RevocationCheckError};
use crate::workload_api::WorkloadToken;

/// What a prepared token is for: workload, program digest, and the
/// caller's own `cnf` key (`None`: the daemon's prepared key, whose PEM the
/// cached token carries).
pub type CacheKey = (String, [u8; 32], Option<Vec<u8>>);

/// Most prepared tokens held at once.
pub const MAX_PREPARED: usize = 1024;

/// A prepared token.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Token, its times, and the daemon's key for it (no key set or list).
    pub token: WorkloadToken,
    /// Where its revocation status is published.
    pub status: Option<StatusRef>,
    /// Handed out since it was prepared (only used ones are renewed).
    used: bool,
}

impl Prepared {
    pub fn new(token: WorkloadToken, status: Option<StatusRef>) -> Self {
        Prepared {
            token,
            status,
            used: false,
        }
    }

    /// Mark it handed out (a miss hands out the token it prepares).
    pub fn handed_out(mut self) -> Self {
        self.used = true;
        self
    }
}

#[derive(Debug)]
struct HeldList {
    bytes: Vec<u8>,
    served_at: Instant,
}

/// Prepared tokens, held status lists and the trusted key set.
#[derive(Debug)]
pub struct TokenCache {
    prepared: Mutex<HashMap<CacheKey, Prepared>>,
    lists: Mutex<HashMap<String, HeldList>>,
    keys: Mutex<Option<(KeySet, Vec<u8>)>>,
    status_max_age: Duration,
}

impl TokenCache {
    pub fn new(status_max_age: Duration) -> Self {
        TokenCache {
            prepared: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
            keys: Mutex::new(None),
            status_max_age,
        }
    }

    /// The prepared token for `key` while `now` is before its renewal time
    /// (marked used).
    pub fn take(&self, key: &CacheKey, now: i64) -> Option<Prepared> {
        let mut prepared = self.prepared.lock().ok()?;
        let p = prepared.get_mut(key).filter(|p| now < p.token.renew_at)?;
        p.used = true;
        Some(p.clone())
    }

    /// Hold `p` for `key` (replacing the one held); expired tokens are
    /// dropped first, and nothing is added beyond [`MAX_PREPARED`].
    pub fn insert(&self, key: CacheKey, p: Prepared, now: i64) {
        if let Ok(mut prepared) = self.prepared.lock() {
            prepared.retain(|_, v| v.token.expires_at > now);
            if prepared.len() < MAX_PREPARED || prepared.contains_key(&key) {
                prepared.insert(key, p);
            }
        }
    }

    /// Drop the token held for `key` if it is the one with `cti`.
    pub fn evict(&self, key: &CacheKey, cti: &[u8]) {
        if let Ok(mut prepared) = self.prepared.lock() {
            if prepared.get(key).is_some_and(|p| p.token.cti == cti) {
                prepared.remove(key);
            }
        }
    }

    /// Prepared tokens due for renewal at `now` that were handed out since
    /// they were prepared; unused ones past renewal are dropped instead.
    pub fn due(&self, now: i64) -> Vec<CacheKey> {
        let Ok(mut prepared) = self.prepared.lock() else {
            return Vec::new();
        };
        prepared.retain(|_, p| p.used || now < p.token.renew_at);
        prepared
            .iter()
            .filter(|(_, p)| now >= p.token.renew_at)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Remember the trusted key set (after the pins were checked).
    /// Returns its COSE_KeySet encoding.
    pub fn set_keys(&self, keys: &KeySet) -> Result<Vec<u8>, verifier_lib::token::TokenError> {
        let encoded = keys.to_cose_key_set()?;
        if let Ok(mut held) = self.keys.lock() {
            *held = Some((keys.clone(), encoded.clone()));
        }
        Ok(encoded)
    }

    /// The trusted key set and its COSE_KeySet encoding, if known.
    pub fn keys(&self) -> Option<(KeySet, Vec<u8>)> {
        self.keys.lock().ok().and_then(|k| k.clone())
    }

    /// The signed list showing the token (`status`, `cti`) VALID at `now`:
    /// the held one when the broker served it less than `status_max_age`
    /// ago, else (or with `refetch`) fetched from the brokers first.
    pub fn listed(
        &self,
        pool: &BrokerPool,
        keys: &KeySet,
        status: Option<&StatusRef>,
        cti: &[u8],
        now: i64,
        refetch: bool,
    ) -> Result<Vec<u8>, RevocationCheckError> {
        let r = status.ok_or(verifier_lib::status::StatusError::TokenUnlisted)?;
        let held = self.lists.lock().ok().and_then(|l| {
            l.get(&r.uri)
                .filter(|h| !refetch && h.served_at.elapsed() <= self.status_max_age)
                .map(|h| h.bytes.clone())
        });
        if let Some(bytes) = held {
            revocation::check_listed(&bytes, keys, Some(r), cti, now)?;
            return Ok(bytes);
        }
        let bytes = pool.run(|broker| revocation::fetch_list(broker, r))?;
        // Hold the list before checking the entry: a list that revokes this
        // token is still the freshest word on every other token in it.
        revocation::check_listed(&bytes, keys, Some(r), cti, now).map_err(|e| {
            if matches!(e, RevocationCheckError::Revoked { .. }) {
                self.hold(&r.uri, &bytes);
            }
            e
        })?;
        self.hold(&r.uri, &bytes);
        Ok(bytes)
    }

    fn hold(&self, uri: &str, bytes: &[u8]) {
        if let Ok(mut lists) = self.lists.lock() {
            lists.insert(
                uri.to_owned(),
                HeldList {
                    bytes: bytes.to_vec(),
                    served_at: Instant::now(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn token(cti: u8, renew_at: i64, expires_at: i64) -> WorkloadToken {
        WorkloadToken {
            token: vec![cti],
            cti: vec![cti],
            workload: "w".into(),
            expires_at,
            renew_at,
            key_pem: None,
            keys: None,
            status_list: None,
        }
    }

    /// A prepared token is handed out until its renewal time; only used
    /// ones are renewed, unused ones are dropped; eviction is by `cti`.
    #[test]
    fn prepared_tokens_are_taken_renewed_when_used_and_evicted_by_cti() {
        let cache = TokenCache::new(Duration::from_secs(1));
        let a: CacheKey = ("w".into(), [1; 32], None);
        let b: CacheKey = ("w".into(), [2; 32], None);
        cache.insert(a.clone(), Prepared::new(token(1, 80, 100), None), 0);
        cache.insert(b.clone(), Prepared::new(token(2, 80, 100), None), 0);
        assert_eq!(cache.take(&a, 79).unwrap().token.cti, vec![1]);
        assert!(cache.take(&a, 80).is_none());
        assert_eq!(cache.due(80), vec![a.clone()]);
        // b was never used: dropped at its renewal time, not renewed.
        assert!(cache.take(&b, 0).is_none());
        cache.evict(&a, &[9]);
        assert!(cache.take(&a, 0).is_some());
        cache.evict(&a, &[1]);
        assert!(cache.take(&a, 0).is_none());
        // Expired tokens leave when a new one is held.
        cache.insert(a.clone(), Prepared::new(token(3, 80, 100), None), 0);
        cache.insert(b.clone(), Prepared::new(token(4, 180, 200), None), 150);
        assert!(cache.take(&a, 50).is_none());
        assert!(cache.take(&b, 150).is_some());
    }
}
