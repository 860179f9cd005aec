//! Whole-log audit: tampering (edit, delete, reorder, truncate, fork) is
//! reported with the right index.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use verifier_lib::audit::{
    leaf_hash, sign_checkpoint, verify_log, verify_log_rows, Checkpoint, CheckpointSigner,
    Decision, Leaf, LogError, LogRow, MerkleTree, Verdict,
};

const ORIGIN: &str = "writ.example/audit";

fn decision(i: u64, salt: &str) -> Decision {
    match i % 4 {
        0 => Decision::NonceIssued {
            host: format!("host-{i}{salt}"),
            nonce_digest: i.to_be_bytes().to_vec(),
        },
        1 => Decision::Appraisal {
            host: format!("host-{i}{salt}"),
            evidence_digest: vec![i as u8; 32],
            policy_id: "prod".into(),
            policy_hash: vec![1; 32],
            verdict: Verdict::Pass,
            failures: vec![],
            tpm_clock: None,
            nonce_digest: None,
            policy_signer: None,
            warnings: vec![],
        },
        2 => Decision::TokenMinted {
            cti: format!("t{i}{salt}"),
            sub: "host".into(),
            aud: "sched".into(),
            exp: 1_700_000_000 + i as i64,
            parent_cti: None,
            token_digest: vec![2; 32],
        },
        _ => Decision::OperatorAction {
            who: "alice".into(),
            what: format!("action {i}{salt}"),
        },
    }
}

fn leaves(n: u64, salt: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| Leaf::new(1_700_000_000 + i as i64, decision(i, salt)).encode())
        .collect()
}

fn checkpoints(signer: &CheckpointSigner, leaves: &[Vec<u8>], sizes: &[u64]) -> Vec<String> {
    let hashes: Vec<_> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let tree = MerkleTree::from_leaf_hashes(&hashes);
    sizes
        .iter()
        .map(|&s| {
            sign_checkpoint(
                signer,
                &Checkpoint::new(ORIGIN, s, tree.root_at(s).unwrap()),
            )
            .unwrap()
        })
        .collect()
}

struct Row {
    index: u64,
    leaf: Vec<u8>,
    hash: [u8; 32],
}

fn rows(leaves: &[Vec<u8>]) -> Vec<Row> {
    leaves
        .iter()
        .enumerate()
        .map(|(i, l)| Row {
            index: i as u64,
            leaf: l.clone(),
            hash: leaf_hash(l),
        })
        .collect()
}

fn audit(rows: &[Row], cps: &[String], vkey: &str, trusted: Option<&str>) -> Result<u64, LogError> {
    let view: Vec<LogRow<'_>> = rows
        .iter()
        .map(|r| LogRow {
            index: r.index,
            leaf: &r.leaf,
            stored_hash: Some(r.hash),
        })
        .collect();
    verify_log_rows(&view, cps, vkey, trusted).map(|r| r.tree_size)
}

const SIZES: [u64; 4] = [10, 20, 35, 50];

fn setup() -> (CheckpointSigner, Vec<Vec<u8>>, Vec<String>) {
    let signer = CheckpointSigner::generate(ORIGIN).unwrap();
    let l = leaves(55, "");
    let cps = checkpoints(&signer, &l, &SIZES);
    (signer, l, cps)
}

#[test]
fn clean_log_verifies() {
    let (signer, l, cps) = setup();
    let vkey = signer.vkey();
    let report = verify_log(&l, &cps, &vkey, Some(&cps[1])).unwrap();
    assert_eq!(report.tree_size, 55);
    assert_eq!(report.checkpoints_verified, 4);
    assert_eq!(report.newest_checkpoint_size, Some(50));
    assert_eq!(report.unsigned_leaves, 5);
    assert_eq!(report.trusted_size, Some(20));
    let hashes: Vec<_> = l.iter().map(|x| leaf_hash(x)).collect();
    assert_eq!(report.root, MerkleTree::from_leaf_hashes(&hashes).root());
    assert_eq!(audit(&rows(&l), &cps, &vkey, None).unwrap(), 55);
    // No checkpoints yet is a valid (if unsigned) log.
    let r = verify_log(&l, &[], &vkey, None).unwrap();
    assert_eq!((r.newest_checkpoint_size, r.unsigned_leaves), (None, 55));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["root"].as_str().unwrap().len(), 64);
}

#[test]
fn edited_row_is_named_by_its_stored_hash() {
    let (signer, l, cps) = setup();
    let mut r = rows(&l);
    r[17].leaf = Leaf::new(0, decision(17, "-forged")).encode();
    assert!(matches!(
        audit(&r, &cps, &signer.vkey(), None),
        Err(LogError::LeafHashMismatch { index: 17, .. })
    ));
}

#[test]
fn edit_with_rewritten_hash_is_caught_by_the_first_covering_checkpoint() {
    let (signer, l, cps) = setup();
    let mut r = rows(&l);
    r[17].leaf = Leaf::new(0, decision(17, "-forged")).encode();
    r[17].hash = leaf_hash(&r[17].leaf);
    assert!(matches!(
        audit(&r, &cps, &signer.vkey(), None),
        Err(LogError::CheckpointRootMismatch {
            checkpoint: 1,
            size: 20,
            first_suspect: 10
        })
    ));
    // Same without stored hashes.
    let mut edited = l.clone();
    edited[3] = Leaf::new(0, decision(3, "-forged")).encode();
    assert!(matches!(
        verify_log(&edited, &cps, &signer.vkey(), None),
        Err(LogError::CheckpointRootMismatch {
            checkpoint: 0,
            size: 10,
            first_suspect: 0
        })
    ));
    // An edit after the newest checkpoint is only visible through stored
    // hashes: the signed prefix still verifies.
    let mut tail = l.clone();
    tail[52] = Leaf::new(0, decision(52, "-forged")).encode();
    assert!(verify_log(&tail, &cps, &signer.vkey(), None).is_ok());
}

#[test]
fn deleted_row_is_an_index_gap() {
    let (signer, l, cps) = setup();
    let mut r = rows(&l);
    r.remove(23);
    assert!(matches!(
        audit(&r, &cps, &signer.vkey(), None),
        Err(LogError::IndexGap {
            expected: 23,
            actual: 24
        })
    ));
    // Without index column: the leaves shift and the covering checkpoint fails.
    let mut shifted = l.clone();
    shifted.remove(23);
    assert!(matches!(
        verify_log(&shifted, &cps, &signer.vkey(), None),
        Err(LogError::CheckpointRootMismatch {
            checkpoint: 2,
            size: 35,
            first_suspect: 20
        })
    ));
}

#[test]
fn reordered_rows_are_detected() {
    let (signer, l, cps) = setup();
    let mut r = rows(&l);
    r.swap(30, 31);
    assert!(matches!(
        audit(&r, &cps, &signer.vkey(), None),
        Err(LogError::IndexGap {
            expected: 30,
            actual: 31
        })
    ));
    // Renumbered after the swap: hashes still match their leaves, so the
    // checkpoint covering 30..35 catches it.
    r[30].index = 30;
    r[31].index = 31;
    assert!(matches!(
        audit(&r, &cps, &signer.vkey(), None),
        Err(LogError::CheckpointRootMismatch {
            checkpoint: 2,
            size: 35,
            first_suspect: 20
        })
    ));
}

#[test]
fn truncation_is_detected() {
    let (signer, l, cps) = setup();
    let vkey = signer.vkey();
    let short = &l[..40];
    assert!(matches!(
        verify_log(short, &cps, &vkey, None),
        Err(LogError::CheckpointBeyondLog {
            checkpoint: 3,
            size: 50,
            log_size: 40
        })
    ));
    // The operator also dropped the newest checkpoint: the trusted one from
    // an earlier audit still catches it.
    assert!(matches!(
        verify_log(short, &cps[..3], &vkey, Some(&cps[3])),
        Err(LogError::Truncated {
            trusted_size: 50,
            actual: 40
        })
    ));
}

#[test]
fn fork_is_detected_against_a_trusted_checkpoint() {
    let (signer, l, cps) = setup();
    let vkey = signer.vkey();
    // A rewritten history sharing the first 20 leaves, re-signed by the log
    // key: self-consistent, but not an extension of what was trusted.
    let mut forked = l[..20].to_vec();
    forked.extend(leaves(55, "-fork").into_iter().skip(20));
    let forked_cps = checkpoints(&signer, &forked, &SIZES);
    assert!(verify_log(&forked, &forked_cps, &vkey, None).is_ok());
    assert!(verify_log(&forked, &forked_cps, &vkey, Some(&cps[1])).is_ok());
    assert!(matches!(
        verify_log(&forked, &forked_cps, &vkey, Some(&cps[2])),
        Err(LogError::ForkDetected { size: 35 })
    ));
}

#[test]
fn bad_leaves_and_checkpoints_are_reported() {
    let (signer, l, cps) = setup();
    let vkey = signer.vkey();
    // A leaf that is not canonical CBOR, with a matching stored hash.
    let mut r = rows(&l);
    r[5].leaf.push(0);
    r[5].hash = leaf_hash(&r[5].leaf);
    assert!(matches!(
        audit(&r, &cps, &vkey, None),
        Err(LogError::LeafUndecodable { index: 5, .. })
    ));
    // A checkpoint signed by another key.
    let other = CheckpointSigner::generate(ORIGIN).unwrap();
    let mut mixed = cps.clone();
    mixed[2] = checkpoints(&other, &l, &[35]).remove(0);
    assert!(matches!(
        verify_log(&l, &mixed, &vkey, None),
        Err(LogError::CheckpointInvalid { checkpoint: 2, .. })
    ));
    assert!(matches!(
        verify_log(&l, &cps, &vkey, Some(&mixed[2])),
        Err(LogError::TrustedInvalid(_))
    ));
    // Out of order.
    let mut swapped = cps.clone();
    swapped.swap(1, 2);
    assert!(matches!(
        verify_log(&l, &swapped, &vkey, None),
        Err(LogError::CheckpointsOutOfOrder {
            checkpoint: 2,
            size: 20,
            previous: 35
        })
    ));
    // Another origin under the same key.
    let hashes: Vec<_> = l.iter().map(|x| leaf_hash(x)).collect();
    let tree = MerkleTree::from_leaf_hashes(&hashes);
    let mut other_origin = cps.clone();
    other_origin[1] = sign_checkpoint(
        &signer,
        &Checkpoint::new("elsewhere", 20, tree.root_at(20).unwrap()),
    )
    .unwrap();
    assert!(matches!(
        verify_log(&l, &other_origin, &vkey, None),
        Err(LogError::OriginMismatch { checkpoint: 1, .. })
    ));
    assert!(matches!(
        verify_log(&l, &cps, "not a vkey", None),
        Err(LogError::VerifierKey(_))
    ));
}
