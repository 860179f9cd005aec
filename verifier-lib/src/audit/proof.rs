//! RFC 9162 inclusion and consistency proofs: generation (§2.1.3.1, §2.1.4.1)
//! and verification (§2.1.3.2, §2.1.4.2).

use super::tree::{empty_root, node_hash, split_point, Hash, SliceHashes, SubtreeHashes};
use super::AuditError;
use crate::crypto::ct_eq;

/// Inclusion proof for leaf `index` in the tree formed by the first
/// `tree_size` of `leaf_hashes`. O(n) hashing; use
/// [`MerkleTree::inclusion_proof`](super::MerkleTree::inclusion_proof) for
/// repeated proofs over a large log.
pub fn inclusion_proof(
    leaf_hashes: &[Hash],
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, AuditError> {
    check_slice_size(leaf_hashes, tree_size)?;
    inclusion_path(&SliceHashes(leaf_hashes), index, tree_size)
}

/// Consistency proof between the trees formed by the first `old_size` and
/// `new_size` of `leaf_hashes`. Empty when `old_size` is 0 or equals
/// `new_size`. O(n) hashing.
pub fn consistency_proof(
    leaf_hashes: &[Hash],
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, AuditError> {
    check_slice_size(leaf_hashes, new_size)?;
    consistency_path(&SliceHashes(leaf_hashes), old_size, new_size)
}

fn check_slice_size(leaf_hashes: &[Hash], size: u64) -> Result<(), AuditError> {
    let available = u64::try_from(leaf_hashes.len()).unwrap_or(u64::MAX);
    if size > available {
        return Err(AuditError::SizeBeyondTree { size, available });
    }
    Ok(())
}

/// PATH(m, D[n]) over a subtree-hash source (caller checked `size`).
pub(crate) fn inclusion_path(
    src: &impl SubtreeHashes,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, AuditError> {
    if index >= size {
        return Err(AuditError::IndexOutOfRange { index, size });
    }
    // Descend from the root, collecting siblings root-first, then reverse.
    let mut path = Vec::new();
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            path.push(src.subtree(start + k, end));
            end = start + k;
        } else {
            path.push(src.subtree(start, start + k));
            start += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (caller checked `new`).
pub(crate) fn consistency_path(
    src: &impl SubtreeHashes,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, AuditError> {
    if old > new {
        return Err(AuditError::OldSizeLarger { old, new });
    }
    let mut path = Vec::new();
    if old == 0 || old == new {
        return Ok(path);
    }
    let (mut start, mut end, mut m) = (0u64, new, old);
    let mut whole = true;
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                path.push(src.subtree(start, end));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            path.push(src.subtree(start + k, end));
            end = start + k;
        } else {
            path.push(src.subtree(start, start + k));
            start += k;
            m -= k;
            whole = false;
        }
    }
    path.reverse();
    Ok(path)
}

/// Number of proof hashes for an inclusion proof of `index` in `size`
/// (`index < size`): the inner path below the split from the right edge,
/// plus one per set bit above it.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    usize::try_from(inner + border).unwrap_or(usize::MAX)
}

/// Verifies an RFC 9162 §2.1.3.2 inclusion proof.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), AuditError> {
    if index >= tree_size {
        return Err(AuditError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let expected = inclusion_proof_len(index, tree_size);
    if proof.len() != expected {
        return Err(AuditError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let mut fn_ = index;
    let mut sn = tree_size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(AuditError::ProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(AuditError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    check_root(&r, root)
}

/// Verifies an RFC 9162 §2.1.4.2 consistency proof that the tree of
/// `old_size` with `old_root` is a prefix of the tree of `new_size` with
/// `new_root`. For `old_size == new_size` the proof must be empty and the
/// roots equal; for `old_size == 0` the proof must be empty and `old_root`
/// must be the empty-tree hash.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), AuditError> {
    if old_size > new_size {
        return Err(AuditError::OldSizeLarger {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(AuditError::ProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        let want = if old_size == 0 {
            empty_root()
        } else {
            *new_root
        };
        return check_root(old_root, &want);
    }
    // Expected length: the inclusion path of leaf old_size-1 in new_size,
    // minus the levels below the old tree's lowest set bit, plus one seed
    // hash unless old_size is a power of two (its root is then the seed).
    let shift = old_size.trailing_zeros();
    let inner_full = 64 - ((old_size - 1) ^ (new_size - 1)).leading_zeros();
    let border = ((old_size - 1) >> inner_full).count_ones();
    let inner = inner_full.saturating_sub(shift);
    let seed_in_proof = u32::from(!old_size.is_power_of_two());
    let expected = usize::try_from(seed_in_proof + inner + border).unwrap_or(usize::MAX);
    if proof.len() != expected {
        return Err(AuditError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut iter = path.iter();
    let Some(first) = iter.next() else {
        return Err(AuditError::ProofLength {
            expected,
            actual: proof.len(),
        });
    };
    let (mut fr, mut sr) = (*first, *first);
    for c in iter {
        if sn == 0 {
            return Err(AuditError::ProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(AuditError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    check_root(&fr, old_root)?;
    check_root(&sr, new_root)
}

fn check_root(computed: &Hash, expected: &Hash) -> Result<(), AuditError> {
    if ct_eq(computed, expected) {
        Ok(())
    } else {
        Err(AuditError::RootMismatch {
            expected: hex::encode(expected),
            computed: hex::encode(computed),
        })
    }
}
