//! Remembering accepted proofs of possession until they could no longer be
//! accepted anyway.
//!
//! [`ReplayCache`] is partitioned by the proof's `cnf` key ([`KeyId`]): each
//! key holds at most `max_entries_per_key` live proofs and the whole cache at
//! most `max_entries`. A holder flooding proofs with its own key therefore
//! fills only its own partition and refuses only its own proofs, as long as
//! the global bound is not reached by many keys at once.
//!
//! Every entry expires at its own `keep_until` (the proof's timestamp plus
//! the window's maximum age). Eviction removes every expired entry, in any
//! partition, whatever the order the entries were inserted in (proofs arrive
//! with out-of-order timestamps); a full partition or cache refuses only when
//! nothing in it has expired (fail closed rather than forget).

use std::collections::{BTreeSet, HashMap};

use super::PopError;
use crate::crypto::HashAlg;
use crate::token::VerifyingKey;

/// Identity of a `cnf` key: SHA-256 of its uncompressed SEC1 point.
pub type KeyId = [u8; 32];

/// Identity of one proof: SHA-256 of the token digest and the proof's jti.
pub type ProofId = [u8; 32];

/// The [`KeyId`] of `key`.
pub fn key_id(key: &VerifyingKey) -> KeyId {
    let mut id = [0u8; 32];
    id.copy_from_slice(&HashAlg::Sha256.digest(key.sec1_point()));
    id
}

/// Remembers proofs already accepted.
pub trait ReplayGuard {
    /// Record proof `id`, made with the `cnf` key `key`, as used until
    /// `keep_until` (inclusive). `Err(Replayed)` if it was already used;
    /// `Err(ReplayKeyFull)` or `Err(ReplayCacheFull)` if it cannot be
    /// remembered.
    fn first_use(
        &mut self,
        key: &KeyId,
        id: ProofId,
        keep_until: i64,
        now: i64,
    ) -> Result<(), PopError>;
}

/// The bounds of a [`ReplayCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Live proofs remembered in all.
    pub max_entries: usize,
    /// Live proofs remembered per `cnf` key. With a window of `max_age`
    /// seconds this caps one key at `max_entries_per_key / max_age` proofs
    /// per second, sustained.
    pub max_entries_per_key: usize,
}

/// A bounded replay cache, partitioned by `cnf` key.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    limits: ReplayLimits,
    /// Per key: proof id → keep_until.
    keys: HashMap<KeyId, HashMap<ProofId, i64>>,
    /// Every entry, ordered by when it expires.
    expiry: BTreeSet<(i64, KeyId, ProofId)>,
}

impl ReplayCache {
    pub fn new(limits: ReplayLimits) -> Self {
        ReplayCache {
            limits,
            keys: HashMap::new(),
            expiry: BTreeSet::new(),
        }
    }

    pub fn limits(&self) -> ReplayLimits {
        self.limits
    }

    /// Entries held (expired ones included until the next insertion).
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    /// Entries held for `key`.
    pub fn key_len(&self, key: &KeyId) -> usize {
        self.keys.get(key).map_or(0, HashMap::len)
    }

    /// Remove every entry whose `keep_until` is before `now`.
    pub fn evict(&mut self, now: i64) {
        while let Some(&(until, key, id)) = self.expiry.first() {
            if until >= now {
                break;
            }
            self.expiry.pop_first();
            if let Some(partition) = self.keys.get_mut(&key) {
                partition.remove(&id);
                if partition.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
    }
}

impl ReplayGuard for ReplayCache {
    fn first_use(
        &mut self,
        key: &KeyId,
        id: ProofId,
        keep_until: i64,
        now: i64,
    ) -> Result<(), PopError> {
        self.evict(now);
        let key_entries = self.key_len(key);
        if self.keys.get(key).is_some_and(|p| p.contains_key(&id)) {
            return Err(PopError::Replayed);
        }
        if key_entries >= self.limits.max_entries_per_key {
            return Err(PopError::ReplayKeyFull {
                key_entries,
                max: self.limits.max_entries_per_key,
            });
        }
        if self.expiry.len() >= self.limits.max_entries {
            return Err(PopError::ReplayCacheFull {
                entries: self.expiry.len(),
                max: self.limits.max_entries,
            });
        }
        self.keys.entry(*key).or_default().insert(id, keep_until);
        self.expiry.insert((keep_until, *key, id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_entries_per_key: usize) -> ReplayCache {
        ReplayCache::new(ReplayLimits {
            max_entries,
            max_entries_per_key,
        })
    }

    const A: KeyId = [0xa; 32];
    const B: KeyId = [0xb; 32];

    #[test]
    fn a_replay_is_refused_until_the_entry_expires() {
        let mut c = cache(10, 10);
        c.first_use(&A, [1; 32], 160, 100).unwrap();
        assert_eq!(c.first_use(&A, [1; 32], 160, 101), Err(PopError::Replayed));
        // Still refused at keep_until itself: the proof is still in its window.
        assert_eq!(c.first_use(&A, [1; 32], 160, 160), Err(PopError::Replayed));
        assert_eq!(c.len(), 1);
        // After it, the entry is gone (and the proof is too old anyway).
        c.first_use(&A, [1; 32], 161, 161).unwrap();
    }

    #[test]
    fn out_of_order_timestamps_evict_every_expired_entry() {
        let mut c = cache(3, 3);
        // Inserted late-expiring first, then earlier ones: a FIFO would stop
        // at the first (live) entry and evict nothing.
        c.first_use(&A, [1; 32], 200, 100).unwrap();
        c.first_use(&A, [2; 32], 120, 100).unwrap();
        c.first_use(&A, [3; 32], 110, 100).unwrap();
        assert_eq!(
            c.first_use(&A, [4; 32], 200, 105),
            Err(PopError::ReplayKeyFull {
                key_entries: 3,
                max: 3
            })
        );
        // At 121 the two early entries have expired, not the first one.
        c.first_use(&A, [4; 32], 200, 121).unwrap();
        c.first_use(&A, [5; 32], 200, 121).unwrap();
        assert_eq!(c.key_len(&A), 3);
        assert_eq!(c.first_use(&A, [1; 32], 200, 121), Err(PopError::Replayed));
        assert_eq!(c.first_use(&A, [4; 32], 200, 121), Err(PopError::Replayed));
    }

    #[test]
    fn a_full_key_refuses_only_its_own_proofs() {
        let mut c = cache(10, 2);
        c.first_use(&A, [1; 32], 160, 100).unwrap();
        c.first_use(&A, [2; 32], 160, 100).unwrap();
        let e = c.first_use(&A, [3; 32], 160, 100).unwrap_err();
        assert_eq!(
            e,
            PopError::ReplayKeyFull {
                key_entries: 2,
                max: 2
            }
        );
        assert_eq!(e.code(), "pop_replay_key_full");
        // Another key is still accepted, up to its own bound; the same
        // proof id under another key is another proof.
        c.first_use(&B, [1; 32], 160, 100).unwrap();
        c.first_use(&B, [3; 32], 160, 100).unwrap();
        assert!(matches!(
            c.first_use(&B, [4; 32], 160, 100),
            Err(PopError::ReplayKeyFull { .. })
        ));
        assert_eq!((c.key_len(&A), c.key_len(&B), c.len()), (2, 2, 4));
        // A replay is a replay even when the key is full.
        assert_eq!(c.first_use(&A, [1; 32], 160, 100), Err(PopError::Replayed));
    }

    #[test]
    fn the_global_bound_holds_across_keys() {
        let mut c = cache(3, 2);
        c.first_use(&A, [1; 32], 160, 100).unwrap();
        c.first_use(&A, [2; 32], 150, 100).unwrap();
        c.first_use(&B, [3; 32], 160, 100).unwrap();
        let e = c.first_use(&B, [4; 32], 160, 100).unwrap_err();
        assert_eq!(e, PopError::ReplayCacheFull { entries: 3, max: 3 });
        assert_eq!(e.code(), "pop_replay_cache_full");
        // One of A's entries expires: room for B again, and A's partition
        // shrank to one.
        c.first_use(&B, [4; 32], 170, 151).unwrap();
        assert_eq!((c.key_len(&A), c.key_len(&B)), (1, 2));
    }

    #[test]
    fn expired_partitions_are_dropped() {
        let mut c = cache(10, 10);
        c.first_use(&A, [1; 32], 110, 100).unwrap();
        c.first_use(&B, [2; 32], 130, 100).unwrap();
        c.evict(120);
        assert_eq!((c.key_len(&A), c.key_len(&B), c.len()), (0, 1, 1));
        assert!(!c.keys.contains_key(&A));
        c.evict(131);
        assert!(c.is_empty() && c.keys.is_empty());
    }
}
