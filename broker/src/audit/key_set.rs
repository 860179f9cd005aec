//! Checking a log's checkpoints against a SET of verifier keys: several
//! brokers append to one log and each signs checkpoints with its own key;
//! each checkpoint verifies under the key its note names.
//!
//! The checks and their order are those of `verifier_lib::audit`'s
//! single-key audit (signature, one origin, sizes never decreasing in issue
//! order, size within the log, root equal to the recomputed root, consistency
//! with the previous checkpoint, then the trusted checkpoint), so that with
//! one key the outcome is the same.

use serde::Serialize;
use verifier_lib::audit::{
    open_checkpoint_with, verify_consistency, AuditError, Checkpoint, LogError, LogReport,
    MerkleTree, VerifierKey,
};
use verifier_lib::crypto::ct_eq;

use super::key::key_ids_of_note;

/// Verifier keys by key id.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<(String, VerifierKey)>,
}

/// How one key of the set was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUse {
    pub key_id: String,
    /// Checkpoints it signed that verified.
    pub checkpoints: usize,
    /// Size of the newest of them.
    pub newest_size: Option<u64>,
}

impl KeySet {
    /// Parses vkey texts; blank lines and `#` comments are skipped.
    pub fn parse<'a>(vkeys: impl IntoIterator<Item = &'a str>) -> Result<KeySet, AuditError> {
        let mut keys: Vec<(String, VerifierKey)> = Vec::new();
        for text in vkeys
            .into_iter()
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.starts_with('#'))
        {
            let vk = VerifierKey::parse(text)?;
            let id = format!("{}+{}", vk.name, hex::encode(vk.key_hash));
            if !keys.iter().any(|(k, _)| *k == id) {
                keys.push((id, vk));
            }
        }
        Ok(KeySet { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The vkey texts, in the set's order.
    pub fn vkeys(&self) -> Vec<String> {
        self.keys.iter().map(|(_, vk)| vk.to_text()).collect()
    }

    /// The key a note names (its first signature line by a key of the set),
    /// with its id.
    fn for_note(&self, note: &str) -> Result<(&str, &VerifierKey), AuditError> {
        let named = key_ids_of_note(note);
        named
            .iter()
            .find_map(|id| {
                self.keys
                    .iter()
                    .find(|(k, _)| k == id)
                    .map(|(k, vk)| (k.as_str(), vk))
            })
            .ok_or_else(|| AuditError::NoteNotSignedByKey {
                key: if named.is_empty() {
                    "any key of the set".to_owned()
                } else {
                    format!("{} (not in the key set)", named.join(", "))
                },
            })
    }

    fn open(&self, note: &str) -> Result<(&str, Checkpoint), AuditError> {
        let (id, vk) = self.for_note(note)?;
        Ok((id, open_checkpoint_with(note, vk)?))
    }
}

/// Checks every checkpoint (in issue order) and `trusted` against `tree`,
/// each under the key of `keys` its note names.
pub fn verify_checkpoints(
    tree: &MerkleTree,
    checkpoints: &[String],
    keys: &KeySet,
    trusted: Option<&str>,
) -> Result<(LogReport, Vec<KeyUse>), LogError> {
    let log_size = tree.len();
    let mut uses: Vec<KeyUse> = Vec::new();
    let mut origin: Option<String> = None;
    let mut previous: Option<(usize, Checkpoint)> = None;
    for (i, note) in checkpoints.iter().enumerate() {
        let invalid = |source| LogError::CheckpointInvalid {
            checkpoint: i,
            source,
        };
        let (key_id, cp) = keys.open(note).map_err(invalid)?;
        match &origin {
            Some(o) if *o != cp.origin => {
                return Err(LogError::OriginMismatch {
                    checkpoint: i,
                    expected: o.clone(),
                    actual: cp.origin,
                })
            }
            Some(_) => {}
            None => origin = Some(cp.origin.clone()),
        }
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
        let root = tree.root_at(cp.size).map_err(invalid)?;
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
        match uses.iter_mut().find(|u| u.key_id == key_id) {
            Some(u) => {
                u.checkpoints += 1;
                u.newest_size = Some(cp.size);
            }
            None => uses.push(KeyUse {
                key_id: key_id.to_owned(),
                checkpoints: 1,
                newest_size: Some(cp.size),
            }),
        }
        previous = Some((i, cp));
    }

    let mut trusted_size = None;
    if let Some(note) = trusted {
        let (_, cp) = keys.open(note).map_err(LogError::TrustedInvalid)?;
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
    Ok((
        LogReport {
            tree_size: log_size,
            root: tree.root(),
            checkpoints_verified: checkpoints.len(),
            newest_checkpoint_size: newest,
            unsigned_leaves: log_size.saturating_sub(newest.unwrap_or(0)),
            trusted_size,
        },
        uses,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier_lib::audit::{sign_checkpoint, CheckpointSigner};

    fn tree(n: u8) -> MerkleTree {
        let mut t = MerkleTree::new();
        for i in 0..n {
            t.push([i; 32]);
        }
        t
    }

    #[test]
    fn each_checkpoint_verifies_under_the_key_its_note_names() {
        let t = tree(6);
        let a = CheckpointSigner::generate("writ-broker/log").unwrap();
        let b = CheckpointSigner::generate("writ-broker/log").unwrap();
        let sign = |s: &CheckpointSigner, n: u64| {
            sign_checkpoint(
                s,
                &Checkpoint::new("writ-broker/log", n, t.root_at(n).unwrap()),
            )
            .unwrap()
        };
        let notes = vec![sign(&a, 2), sign(&b, 4), sign(&b, 4), sign(&a, 6)];
        let both = KeySet::parse([a.vkey().as_str(), b.vkey().as_str()]).unwrap();
        let (report, uses) = verify_checkpoints(&t, &notes, &both, None).unwrap();
        assert_eq!(report.checkpoints_verified, 4);
        assert_eq!(report.newest_checkpoint_size, Some(6));
        assert_eq!(uses.len(), 2);
        assert_eq!((uses[0].checkpoints, uses[0].newest_size), (2, Some(6)));
        assert_eq!((uses[1].checkpoints, uses[1].newest_size), (2, Some(4)));

        // Only a's key: b's first checkpoint is refused, by position.
        let only_a = KeySet::parse([a.vkey().as_str()]).unwrap();
        match verify_checkpoints(&t, &notes, &only_a, None) {
            Err(LogError::CheckpointInvalid { checkpoint: 1, .. }) => {}
            other => panic!("expected checkpoint 1 invalid, got {other:?}"),
        }

        // A checkpoint whose root is not the log's at its size.
        let forged = sign_checkpoint(&b, &Checkpoint::new("writ-broker/log", 5, [9; 32])).unwrap();
        let notes = vec![sign(&a, 2), forged];
        match verify_checkpoints(&t, &notes, &both, None) {
            Err(LogError::CheckpointRootMismatch {
                checkpoint: 1,
                size: 5,
                first_suspect: 2,
            }) => {}
            other => panic!("expected a root mismatch, got {other:?}"),
        }

        // Sizes going back in issue order.
        let notes = vec![sign(&a, 4), sign(&b, 3)];
        assert!(matches!(
            verify_checkpoints(&t, &notes, &both, None),
            Err(LogError::CheckpointsOutOfOrder { checkpoint: 1, .. })
        ));
    }
}
