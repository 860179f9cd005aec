//! RFC 9162 §2.1 Merkle tree hashing: leaf and node hashes, the Merkle tree
//! head (MTH) of a list of leaf hashes, and [`MerkleTree`], an append-only
//! in-memory tree that caches every complete subtree so that roots and proofs
//! at any historical size cost O(log n) hashes.

use sha2::{Digest as _, Sha256};

use super::AuditError;

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// RFC 9162 leaf hash: SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf_bytes);
    h.finalize().into()
}

/// RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// MTH of the empty list: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The Merkle tree head of `leaf_hashes` (RFC 9162 §2.1.1). O(n) hashing.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    // A stack of complete subtrees (size, hash), strictly decreasing in size:
    // merging equal sizes as they appear gives the same shape as the RFC's
    // "largest power of two smaller than n" split.
    let mut stack: Vec<(u64, Hash)> = Vec::new();
    for leaf in leaf_hashes {
        let mut cur = (1u64, *leaf);
        while let Some(&(size, top)) = stack.last() {
            if size != cur.0 {
                break;
            }
            stack.pop();
            cur = (size.saturating_mul(2), node_hash(&top, &cur.1));
        }
        stack.push(cur);
    }
    let mut iter = stack.into_iter().rev();
    let Some((_, mut acc)) = iter.next() else {
        return empty_root();
    };
    for (_, left) in iter {
        acc = node_hash(&left, &acc);
    }
    acc
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Source of subtree hashes MTH(D[start..end]) for proof generation.
pub(crate) trait SubtreeHashes {
    /// MTH of the leaves `start..end` (`start < end`, range within the tree).
    fn subtree(&self, start: u64, end: u64) -> Hash;
}

/// Subtree hashes straight from a slice of leaf hashes (O(n) per call).
pub(crate) struct SliceHashes<'a>(pub(crate) &'a [Hash]);

impl SubtreeHashes for SliceHashes<'_> {
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let range = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.0.get(s..e));
        root(range.unwrap_or_default())
    }
}

/// An append-only Merkle tree over leaf hashes that keeps every level, so
/// `push` is O(1) amortised (O(log n) worst case) and the root or a proof at
/// any size `<= len()` is O(log n) cached look-ups plus O(log n) hashes for
/// the ragged right edge. Memory: about two hashes (64 bytes) per leaf.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[k][i]` is the hash of the complete subtree of `2^k` leaves
    /// starting at leaf `i * 2^k`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    /// A tree holding `leaf_hashes` in order.
    pub fn from_leaf_hashes(leaf_hashes: &[Hash]) -> MerkleTree {
        let mut tree = MerkleTree::new();
        tree.reserve(leaf_hashes.len());
        for h in leaf_hashes {
            tree.push(*h);
        }
        tree
    }

    /// Reserves room for `additional` more leaves.
    pub fn reserve(&mut self, additional: usize) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let mut extra = additional;
        for level in &mut self.levels {
            level.reserve(extra);
            extra = extra.div_ceil(2);
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels
            .first()
            .map_or(0, |l| u64::try_from(l.len()).unwrap_or(u64::MAX))
    }

    /// True when the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut level = 0usize;
        let mut cur = leaf_hash;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(cur);
            let n = row.len();
            if n % 2 == 1 {
                return;
            }
            match (row.get(n - 2), row.get(n - 1)) {
                (Some(l), Some(r)) => cur = node_hash(l, r),
                _ => return,
            }
            level += 1;
        }
    }

    /// The Merkle tree head of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(self.subtree(0, size))
    }

    /// The Merkle tree head of all leaves.
    pub fn root(&self) -> Hash {
        self.root_at(self.len()).unwrap_or_else(|_| empty_root())
    }

    /// RFC 9162 inclusion proof for leaf `index` in the tree of size `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        super::proof::inclusion_path(self, index, size)
    }

    /// RFC 9162 consistency proof from size `old` to size `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(new)?;
        super::proof::consistency_path(self, old, new)
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        if size > self.len() {
            return Err(AuditError::SizeBeyondTree {
                size,
                available: self.len(),
            });
        }
        Ok(())
    }

    /// Cached hash of the complete, aligned subtree `[start, start + 2^level)`.
    fn cached(&self, level: u32, start: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(start >> level).ok()?).copied()
    }
}

impl SubtreeHashes for MerkleTree {
    fn subtree(&self, start: u64, end: u64) -> Hash {
        // Walk down the right edge: each left part is a complete, aligned
        // subtree found in the cache; the ragged remainder is split again.
        let mut lefts: Vec<Hash> = Vec::new();
        let mut s = start;
        let last = loop {
            let n = end - s;
            if n.is_power_of_two() && s % n == 0 {
                if let Some(h) = self.cached(n.trailing_zeros(), s) {
                    break h;
                }
            }
            if n == 1 {
                // Unreachable for in-range requests: size-1 ranges are cached.
                break self.leaf(s).unwrap_or_else(empty_root);
            }
            let k = split_point(n);
            lefts.push(self.cached(k.trailing_zeros(), s).unwrap_or_else(|| {
                // Also unreachable in range: left parts are complete and aligned.
                SliceHashes(self.levels.first().map_or(&[], |v| v.as_slice())).subtree(s, s + k)
            }));
            s += k;
        };
        lefts.iter().rev().fold(last, |acc, l| node_hash(l, &acc))
    }
}
