//! Whole-log audit: recompute the tree from the stored rows, decode every
//! leaf, and check every signed checkpoint and an optional trusted earlier
//! checkpoint against it.

use serde::Serialize;

use super::checkpoint::{open_checkpoint_with, Checkpoint, VerifierKey};
use super::proof::verify_consistency;
use super::tree::{leaf_hash, Hash, MerkleTree};
use super::{AuditError, Leaf};
use crate::crypto::ct_eq;

/// One stored log row as the broker keeps it.
#[derive(Debug, Clone, Copy)]
pub struct LogRow<'a> {
    /// The row's stored position in the log.
    pub index: u64,
    /// The encoded [`Leaf`].
    pub leaf: &'a [u8],
    /// The leaf hash the broker stored when it appended the row, if kept.
    pub stored_hash: Option<Hash>,
}

/// Summary of a successful audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogReport {
    /// Number of leaves.
    pub tree_size: u64,
    /// Root of the whole log (hex in JSON).
    #[serde(serialize_with = "hex_hash")]
    pub root: Hash,
    /// Checkpoints whose signature and root were verified.
    pub checkpoints_verified: usize,
    /// Size of the newest checkpoint, if any.
    pub newest_checkpoint_size: Option<u64>,
    /// Leaves appended after the newest checkpoint (not yet signed).
    pub unsigned_leaves: u64,
    /// Size of the trusted checkpoint the log was checked to extend.
    pub trusted_size: Option<u64>,
}

fn hex_hash<S: serde::Serializer>(v: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// Why a log failed its audit. Indices are leaf positions (0-based);
/// `checkpoint` fields are positions in the checkpoint list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("verifier key: {0}")]
    VerifierKey(#[source] AuditError),
    #[error("row at position {expected} has index {actual} (missing, extra or reordered rows)")]
    IndexGap { expected: u64, actual: u64 },
    #[error("leaf {index}: stored hash {stored} but the leaf hashes to {computed}")]
    LeafHashMismatch {
        index: u64,
        stored: String,
        computed: String,
    },
    #[error("leaf {index} does not decode: {source}")]
    LeafUndecodable {
        index: u64,
        #[source]
        source: AuditError,
    },
    #[error("checkpoint {checkpoint}: {source}")]
    CheckpointInvalid {
        checkpoint: usize,
        #[source]
        source: AuditError,
    },
    #[error("checkpoint {checkpoint}: origin {actual:?}, expected {expected:?}")]
    OriginMismatch {
        checkpoint: usize,
        expected: String,
        actual: String,
    },
    #[error(
        "checkpoint {checkpoint}: size {size} is smaller than the previous checkpoint's {previous}"
    )]
    CheckpointsOutOfOrder {
        checkpoint: usize,
        size: u64,
        previous: u64,
    },
    #[error("checkpoint {checkpoint}: size {size} but the log holds only {log_size} leaves")]
    CheckpointBeyondLog {
        checkpoint: usize,
        size: u64,
        log_size: u64,
    },
    #[error(
        "checkpoint {checkpoint}: root at size {size} differs from the log's; the first altered \
         leaf is in {first_suspect}..{size}"
    )]
    CheckpointRootMismatch {
        checkpoint: usize,
        size: u64,
        /// Size of the last checkpoint that matched (0 if none): the first
        /// altered leaf has an index in `first_suspect..size`.
        first_suspect: u64,
    },
    #[error("checkpoints {from} and {to} are not consistent: {source}")]
    ConsistencyFailed {
        from: usize,
        to: usize,
        #[source]
        source: AuditError,
    },
    #[error("trusted checkpoint: {0}")]
    TrustedInvalid(#[source] AuditError),
    #[error("trusted checkpoint has size {trusted_size} but the log holds only {actual} leaves")]
    Truncated { trusted_size: u64, actual: u64 },
    #[error("the log's root at size {size} differs from the trusted checkpoint's (fork)")]
    ForkDetected { size: u64 },
}

/// Audits a log given its leaves in order (row index = position, no stored
/// hashes). See [`verify_log_rows`].
pub fn verify_log(
    leaves: &[Vec<u8>],
    checkpoints: &[String],
    vkey: &str,
    trusted: Option<&str>,
) -> Result<LogReport, LogError> {
    let rows: Vec<LogRow<'_>> = leaves
        .iter()
        .enumerate()
        .map(|(i, leaf)| LogRow {
            index: u64::try_from(i).unwrap_or(u64::MAX),
            leaf,
            stored_hash: None,
        })
        .collect();
    verify_log_rows(&rows, checkpoints, vkey, trusted)
}

/// Audits a log from its stored rows, signed checkpoints (in publication
/// order) and optionally a checkpoint note trusted from an earlier audit.
///
/// Order of checks, so the first error names the earliest fault:
/// 1. rows: position `i` must carry index `i` ([`LogError::IndexGap`]), the
///    stored hash, when present, must equal the leaf's hash
///    ([`LogError::LeafHashMismatch`]), and the leaf must decode canonically
///    ([`LogError::LeafUndecodable`]);
/// 2. each checkpoint: signature by `vkey`, same origin as the first, size
///    not decreasing and within the log, root equal to the recomputed root
///    at its size, and a consistency proof from the previous checkpoint;
/// 3. `trusted`: signature, same origin, size within the log
///    ([`LogError::Truncated`]) and root equal to the log's root at that size
///    ([`LogError::ForkDetected`]).
pub fn verify_log_rows(
    rows: &[LogRow<'_>],
    checkpoints: &[String],
    vkey: &str,
    trusted: Option<&str>,
) -> Result<LogReport, LogError> {
    let vk = VerifierKey::parse(vkey).map_err(LogError::VerifierKey)?;
    let mut tree = MerkleTree::new();
    tree.reserve(rows.len());
    for (pos, row) in rows.iter().enumerate() {
        let expected = u64::try_from(pos).unwrap_or(u64::MAX);
        if row.index != expected {
            return Err(LogError::IndexGap {
                expected,
                actual: row.index,
            });
        }
        let h = leaf_hash(row.leaf);
        if let Some(stored) = row.stored_hash {
            if !ct_eq(&stored, &h) {
                return Err(LogError::LeafHashMismatch {
                    index: expected,
                    stored: hex::encode(stored),
                    computed: hex::encode(h),
                });
            }
        }
        Leaf::decode(row.leaf).map_err(|source| LogError::LeafUndecodable {
            index: expected,
            source,
        })?;
        tree.push(h);
    }
    verify_tree(&tree, checkpoints, &vk, trusted)
}

/// Audits a log known only by its leaf hashes in order (what
/// `/v1/audit/entries` publishes without operator credentials): every
/// signed checkpoint's root and the consistency between successive ones,
/// and that the log extends `trusted`. Leaf contents are not checked.
pub fn verify_log_hashes(
    leaf_hashes: &[Hash],
    checkpoints: &[String],
    vkey: &str,
    trusted: Option<&str>,
) -> Result<LogReport, LogError> {
    let vk = VerifierKey::parse(vkey).map_err(LogError::VerifierKey)?;
    verify_tree(
        &MerkleTree::from_leaf_hashes(leaf_hashes),
        checkpoints,
        &vk,
        trusted,
    )
}

/// Checks 2 and 3 of [`verify_log_rows`] on a recomputed tree.
fn verify_tree(
    tree: &MerkleTree,
    checkpoints: &[String],
    vk: &VerifierKey,
    trusted: Option<&str>,
) -> Result<LogReport, LogError> {
    let log_size = tree.len();

    let mut origin: Option<String> = None;
    let mut previous: Option<(usize, Checkpoint)> = None;
    for (i, note) in checkpoints.iter().enumerate() {
        let cp = open_checkpoint_with(note, vk).map_err(|source| LogError::CheckpointInvalid {
            checkpoint: i,
            source,
        })?;
        check_origin(&mut origin, &cp, i)?;
        if let Some((_, prev)) = &previous {
            if cp.size < prev.size {
                return Err(LogError::CheckpointsOutOfOrder {
                    checkpoint: i,
                    size: cp.size,
                    previous: prev.size,
                });
            }
        }
        if cp.size > log_size {
            return Err(LogError::CheckpointBeyondLog {
                checkpoint: i,
                size: cp.size,
                log_size,
            });
        }
        let root = tree
            .root_at(cp.size)
            .map_err(|source| LogError::CheckpointInvalid {
                checkpoint: i,
                source,
            })?;
        if !ct_eq(&root, &cp.root) {
            return Err(LogError::CheckpointRootMismatch {
                checkpoint: i,
                size: cp.size,
                first_suspect: previous.as_ref().map_or(0, |(_, p)| p.size),
            });
        }
        if let Some((j, prev)) = &previous {
            tree.consistency_proof(prev.size, cp.size)
                .and_then(|proof| {
                    verify_consistency(prev.size, cp.size, &prev.root, &cp.root, &proof)
                })
                .map_err(|source| LogError::ConsistencyFailed {
                    from: *j,
                    to: i,
                    source,
                })?;
        }
        previous = Some((i, cp));
    }

    let mut trusted_size = None;
    if let Some(note) = trusted {
        let cp = open_checkpoint_with(note, vk).map_err(LogError::TrustedInvalid)?;
        if let Some(o) = &origin {
            if *o != cp.origin {
                return Err(LogError::TrustedInvalid(AuditError::OriginMismatch {
                    expected: o.clone(),
                    actual: cp.origin,
                }));
            }
        }
        if cp.size > log_size {
            return Err(LogError::Truncated {
                trusted_size: cp.size,
                actual: log_size,
            });
        }
        let root = tree.root_at(cp.size).map_err(LogError::TrustedInvalid)?;
        if !ct_eq(&root, &cp.root) {
            return Err(LogError::ForkDetected { size: cp.size });
        }
        trusted_size = Some(cp.size);
    }

    let newest = previous.map(|(_, cp)| cp.size);
    Ok(LogReport {
        tree_size: log_size,
        root: tree.root(),
        checkpoints_verified: checkpoints.len(),
        newest_checkpoint_size: newest,
        unsigned_leaves: log_size.saturating_sub(newest.unwrap_or(0)),
        trusted_size,
    })
}

fn check_origin(origin: &mut Option<String>, cp: &Checkpoint, i: usize) -> Result<(), LogError> {
    match origin {
        Some(o) if *o != cp.origin => Err(LogError::OriginMismatch {
            checkpoint: i,
            expected: o.clone(),
            actual: cp.origin.clone(),
        }),
        Some(_) => Ok(()),
        None => {
            *origin = Some(cp.origin.clone());
            Ok(())
        }
    }
}
