//! RFC 9162 tree and proof tests: ct-merkle as an independent oracle, the
//! transparency-dev/merkle vectors, round trips and tampered proofs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use serde::Deserialize;
use verifier_lib::audit::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, root, verify_consistency,
    verify_inclusion, AuditError, Hash, MerkleTree,
};

type Oracle = MemoryBackedTree<sha2_next::Sha256, Vec<u8>>;

fn vectors() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/audit"))
}

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn leaf_data(i: u64) -> Vec<u8> {
    format!("writ audit leaf {i}").into_bytes()
}

fn flat(proof: &[Hash]) -> Vec<u8> {
    proof.iter().flatten().copied().collect()
}

fn build(n: u64) -> (Vec<Hash>, MerkleTree, Oracle) {
    let mut hashes = Vec::new();
    let mut tree = MerkleTree::new();
    let mut oracle = Oracle::new();
    for i in 0..n {
        let d = leaf_data(i);
        hashes.push(leaf_hash(&d));
        tree.push(leaf_hash(&d));
        oracle.push(d);
    }
    (hashes, tree, oracle)
}

#[test]
fn matches_ct_merkle_for_every_size_index_and_pair_up_to_70() {
    let (hashes, tree, _) = build(70);
    let mut oracle = Oracle::new();
    for n in 1..=70u64 {
        oracle.push(leaf_data(n - 1));
        let prefix = &hashes[..n as usize];
        let want_root = oracle.root();
        assert_eq!(&root(prefix)[..], &want_root.as_bytes()[..], "root at {n}");
        assert_eq!(&tree.root_at(n).unwrap()[..], &want_root.as_bytes()[..]);
        for idx in 0..n {
            let want = oracle.prove_inclusion(idx as usize);
            assert_eq!(
                flat(&tree.inclusion_proof(idx, n).unwrap()),
                want.as_bytes(),
                "inclusion {idx} in {n}"
            );
            assert_eq!(
                flat(&inclusion_proof(prefix, idx, n).unwrap()),
                want.as_bytes()
            );
        }
        for old in 1..n {
            let want = oracle.prove_consistency((n - old) as usize);
            assert_eq!(
                flat(&tree.consistency_proof(old, n).unwrap()),
                want.as_bytes(),
                "consistency {old} -> {n}"
            );
            assert_eq!(
                flat(&consistency_proof(prefix, old, n).unwrap()),
                want.as_bytes()
            );
        }
    }
}

#[test]
fn matches_ct_merkle_at_random_larger_sizes() {
    let mut rng = Rng(7);
    for _ in 0..4 {
        let n = 100 + rng.below(2000);
        let (hashes, tree, oracle) = build(n);
        assert_eq!(&tree.root()[..], &oracle.root().as_bytes()[..]);
        assert_eq!(&root(&hashes)[..], &oracle.root().as_bytes()[..]);
        for _ in 0..25 {
            let idx = rng.below(n);
            assert_eq!(
                flat(&tree.inclusion_proof(idx, n).unwrap()),
                oracle.prove_inclusion(idx as usize).as_bytes()
            );
            let old = 1 + rng.below(n - 1);
            assert_eq!(
                flat(&tree.consistency_proof(old, n).unwrap()),
                oracle.prove_consistency((n - old) as usize).as_bytes()
            );
            // Historical sizes: compare against an oracle of that size.
            let size = 1 + rng.below(n);
            let mut small = Oracle::new();
            for i in 0..size {
                small.push(leaf_data(i));
            }
            assert_eq!(
                &tree.root_at(size).unwrap()[..],
                &small.root().as_bytes()[..]
            );
            let i = rng.below(size);
            assert_eq!(
                flat(&tree.inclusion_proof(i, size).unwrap()),
                small.prove_inclusion(i as usize).as_bytes()
            );
        }
    }
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(
        hex::encode(root(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(MerkleTree::new().root(), empty_root());
    assert_eq!(MerkleTree::new().root_at(0).unwrap(), empty_root());
}

#[derive(Deserialize)]
struct Reference {
    leaves_hex: Vec<String>,
    roots_hex: Vec<String>,
    empty_root_hex: String,
    inclusion_proofs: Vec<RefInclusion>,
    consistency_proofs: Vec<RefConsistency>,
}
#[derive(Deserialize)]
struct RefInclusion {
    leaf_1based: u64,
    size: u64,
    proof_hex: Vec<String>,
}
#[derive(Deserialize)]
struct RefConsistency {
    size1: u64,
    size2: u64,
    proof_hex: Vec<String>,
}

fn h32(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn reference_tree_vectors() {
    let r: Reference = serde_json::from_slice(
        &std::fs::read(vectors().join("rfc6962-reference-tree.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(empty_root(), h32(&r.empty_root_hex));
    let hashes: Vec<Hash> = r
        .leaves_hex
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).unwrap()))
        .collect();
    let tree = MerkleTree::from_leaf_hashes(&hashes);
    for (i, want) in r.roots_hex.iter().enumerate() {
        assert_eq!(root(&hashes[..=i]), h32(want), "root of {} leaves", i + 1);
        assert_eq!(tree.root_at(i as u64 + 1).unwrap(), h32(want));
    }
    for p in &r.inclusion_proofs {
        let want: Vec<Hash> = p.proof_hex.iter().map(|h| h32(h)).collect();
        let idx = p.leaf_1based - 1;
        assert_eq!(tree.inclusion_proof(idx, p.size).unwrap(), want);
        let root = h32(&r.roots_hex[p.size as usize - 1]);
        verify_inclusion(&hashes[idx as usize], idx, p.size, &want, &root).unwrap();
    }
    for p in &r.consistency_proofs {
        let want: Vec<Hash> = p.proof_hex.iter().map(|h| h32(h)).collect();
        assert_eq!(tree.consistency_proof(p.size1, p.size2).unwrap(), want);
        let r1 = h32(&r.roots_hex[p.size1 as usize - 1]);
        let r2 = h32(&r.roots_hex[p.size2 as usize - 1]);
        verify_consistency(p.size1, p.size2, &r1, &r2, &want).unwrap();
    }
}

/// Decodes a base64 hash; vectors with malformed hashes (wrong length) can
/// only be rejections, reported as `None`.
fn b64_hash(s: &str) -> Option<Hash> {
    B64.decode(s).ok()?.try_into().ok()
}

fn b64_proof(p: &Option<Vec<String>>) -> Option<Vec<Hash>> {
    p.as_deref()
        .unwrap_or_default()
        .iter()
        .map(|s| b64_hash(s))
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

fn json_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dir).unwrap() {
        let p = d.unwrap().path();
        if p.is_dir() {
            out.extend(json_files(&p));
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn transparency_dev_inclusion_vectors() {
    let files = json_files(&vectors().join("transparency-dev/inclusion"));
    assert!(files.len() >= 5);
    for f in files {
        let c: InclusionCase = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let result = match (
            b64_hash(&c.root),
            b64_hash(&c.leaf_hash),
            b64_proof(&c.proof),
        ) {
            (Some(root), Some(leaf), Some(proof)) => {
                verify_inclusion(&leaf, c.leaf_idx, c.tree_size, &proof, &root)
            }
            _ => Err(AuditError::ProofLength {
                expected: 0,
                actual: 0,
            }),
        };
        assert_eq!(result.is_err(), c.want_err, "{}: {result:?}", f.display());
    }
}

#[test]
fn transparency_dev_consistency_vectors() {
    let files = json_files(&vectors().join("transparency-dev/consistency"));
    assert!(files.len() >= 5);
    for f in files {
        let c: ConsistencyCase = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let result = match (b64_hash(&c.root1), b64_hash(&c.root2), b64_proof(&c.proof)) {
            (Some(r1), Some(r2), Some(proof)) => {
                verify_consistency(c.size1, c.size2, &r1, &r2, &proof)
            }
            _ => Err(AuditError::ProofLength {
                expected: 0,
                actual: 0,
            }),
        };
        assert_eq!(result.is_err(), c.want_err, "{}: {result:?}", f.display());
    }
}

#[test]
fn round_trips_for_every_pair_up_to_64() {
    let (hashes, tree, _) = build(64);
    for size in 1..=64u64 {
        let r = tree.root_at(size).unwrap();
        for idx in 0..size {
            let p = tree.inclusion_proof(idx, size).unwrap();
            verify_inclusion(&hashes[idx as usize], idx, size, &p, &r).unwrap();
        }
        for old in 0..=size {
            let p = tree.consistency_proof(old, size).unwrap();
            let old_root = tree.root_at(old).unwrap();
            verify_consistency(old, size, &old_root, &r, &p).unwrap();
        }
    }
}

#[test]
fn round_trips_for_random_pairs_at_10000() {
    let n = 10_000u64;
    let (hashes, tree, _) = build(n);
    let mut rng = Rng(42);
    for _ in 0..2_000 {
        let size = 1 + rng.below(n);
        let idx = rng.below(size);
        let r = tree.root_at(size).unwrap();
        let p = tree.inclusion_proof(idx, size).unwrap();
        verify_inclusion(&hashes[idx as usize], idx, size, &p, &r).unwrap();
        let old = rng.below(size + 1);
        let p = tree.consistency_proof(old, size).unwrap();
        verify_consistency(old, size, &tree.root_at(old).unwrap(), &r, &p).unwrap();
    }
}

#[test]
fn tampered_inclusion_proofs_are_rejected() {
    let (hashes, tree, _) = build(40);
    for size in [1u64, 2, 3, 7, 8, 13, 32, 40] {
        let r = tree.root_at(size).unwrap();
        for idx in 0..size {
            let leaf = hashes[idx as usize];
            let p = tree.inclusion_proof(idx, size).unwrap();
            for i in 0..p.len() {
                for bit in [0u8, 3, 7] {
                    let mut bad = p.clone();
                    bad[i][i % 32] ^= 1 << bit;
                    assert!(verify_inclusion(&leaf, idx, size, &bad, &r).is_err());
                }
            }
            let mut longer = p.clone();
            longer.push(r);
            assert!(verify_inclusion(&leaf, idx, size, &longer, &r).is_err());
            let mut prefixed = vec![r];
            prefixed.extend_from_slice(&p);
            assert!(verify_inclusion(&leaf, idx, size, &prefixed, &r).is_err());
            if let Some((_, shorter)) = p.split_last() {
                assert!(verify_inclusion(&leaf, idx, size, shorter, &r).is_err());
                assert!(verify_inclusion(&leaf, idx ^ 1, size, &p, &r).is_err());
            }
            assert!(verify_inclusion(&leaf, idx, size * 2, &p, &r).is_err());
            assert!(verify_inclusion(&hashes[(idx as usize + 1) % 40], idx, size, &p, &r).is_err());
            assert!(verify_inclusion(&leaf, idx, size, &p, &empty_root()).is_err());
            assert!(matches!(
                verify_inclusion(&leaf, size, size, &p, &r),
                Err(AuditError::IndexOutOfRange { .. })
            ));
        }
    }
}

#[test]
fn tampered_consistency_proofs_are_rejected() {
    let (_, tree, _) = build(40);
    for new in [2u64, 3, 5, 8, 13, 33, 40] {
        let r2 = tree.root_at(new).unwrap();
        for old in 1..new {
            let r1 = tree.root_at(old).unwrap();
            let p = tree.consistency_proof(old, new).unwrap();
            for i in 0..p.len() {
                let mut bad = p.clone();
                bad[i][0] ^= 0x10;
                assert!(verify_consistency(old, new, &r1, &r2, &bad).is_err());
            }
            assert!(
                verify_consistency(old, new, &r2, &r1, &p).is_err(),
                "swapped"
            );
            assert!(
                verify_consistency(old, new, &r1, &r2, &[]).is_err(),
                "empty"
            );
            assert!(verify_consistency(old, new, &r1, &empty_root(), &p).is_err());
            let mut longer = p.clone();
            longer.push(r1);
            assert!(verify_consistency(old, new, &r1, &r2, &longer).is_err());
            if let Some((_, shorter)) = p.split_last() {
                assert!(verify_consistency(old, new, &r1, &r2, shorter).is_err());
            }
            assert!(verify_consistency(new, old, &r2, &r1, &p).is_err());
            assert!(verify_consistency(old, new * 2, &r1, &r2, &p).is_err());
        }
    }
    let r1 = tree.root_at(1).unwrap();
    assert!(
        verify_consistency(0, 1, &r1, &r1, &[]).is_err(),
        "old root of size 0"
    );
    assert!(verify_consistency(3, 3, &r1, &tree.root_at(3).unwrap(), &[]).is_err());
}

#[test]
fn size_and_index_limits_are_errors_not_panics() {
    let (hashes, tree, _) = build(5);
    assert!(matches!(
        tree.root_at(6),
        Err(AuditError::SizeBeyondTree {
            size: 6,
            available: 5
        })
    ));
    assert!(tree.inclusion_proof(5, 5).is_err());
    assert!(tree.inclusion_proof(0, 0).is_err());
    assert!(tree.consistency_proof(4, 3).is_err());
    assert!(inclusion_proof(&hashes, 0, 9).is_err());
    assert!(consistency_proof(&hashes, 2, 9).is_err());
    assert!(verify_inclusion(&hashes[0], 0, 0, &[], &empty_root()).is_err());
    assert!(verify_inclusion(&hashes[0], u64::MAX, u64::MAX, &[], &empty_root()).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &hashes[0], &hashes[1], &[]).is_err());
}
