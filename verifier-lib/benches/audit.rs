//! Audit-log tree benchmarks at 1M leaves, reported as ratios to raw SHA-256
//! over the same number of 64-byte inputs measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sha2::{Digest, Sha256};
use verifier_lib::audit::{leaf_hash, node_hash, root, Hash, MerkleTree};

const N: u64 = 1_000_000;

fn leaf_hashes(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Mean time of `f` over `iters` runs.
fn time<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters
}

fn bench(c: &mut Criterion) {
    let hashes = leaf_hashes(N);
    let tree = MerkleTree::from_leaf_hashes(&hashes);

    // Whole-log figures (each run is 1M hashes; measured directly, a few runs).
    let raw = time(3, || {
        let mut buf = [0x5au8; 64];
        for i in 0..N {
            buf[..8].copy_from_slice(&i.to_le_bytes());
            black_box(Sha256::digest(buf));
        }
    });
    let raw_64 = time(3, || {
        let mut acc = [0u8; 32];
        for _ in 0..N {
            acc = node_hash(&acc, &acc);
        }
        black_box(acc);
    });
    let append = time(3, || {
        let mut t = MerkleTree::new();
        t.reserve(hashes.len());
        for h in &hashes {
            t.push(*h);
        }
        black_box(t.len());
    });
    let recompute = time(3, || {
        black_box(root(&hashes));
    });
    let leaves: Vec<Vec<u8>> = (0..N).map(|i| vec![(i % 251) as u8; 64]).collect();
    let from_leaves = time(3, || {
        let mut t = MerkleTree::new();
        t.reserve(leaves.len());
        for l in &leaves {
            t.push(leaf_hash(l));
        }
        black_box(t.root());
    });
    println!("audit figures at {N} leaves (mean of 3 runs):");
    println!("  raw SHA-256 of 1M x 64 bytes ....... {raw:?}");
    println!("  raw node_hash (65 bytes) x 1M ...... {raw_64:?}");
    println!(
        "  MerkleTree append 1M leaf hashes ... {append:?} ({:.2}x raw SHA-256)",
        append.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "  root(&[Hash]) recompute, 1M ........ {recompute:?} ({:.2}x raw SHA-256)",
        recompute.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "  verify_log-like: leaf_hash(64 B) + push + root, 1M ... {from_leaves:?} ({:.2}x raw SHA-256)",
        from_leaves.as_secs_f64() / raw.as_secs_f64()
    );

    let one_hash = time(100_000, || {
        black_box(node_hash(black_box(&[1u8; 32]), black_box(&[2u8; 32])));
    });
    let mut g = c.benchmark_group("audit_1m");
    g.sample_size(20);
    let ratio = |d: Duration| d.as_secs_f64() / one_hash.as_secs_f64();
    let sizes = [N, N - 1, 999_983, 524_289];
    g.bench_function("root_at(size)", |b| {
        let mut k = 0usize;
        b.iter(|| {
            k = k.wrapping_add(1);
            black_box(tree.root_at(sizes[k % sizes.len()]).unwrap())
        })
    });
    g.bench_function("inclusion_proof(i, 1M)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(tree.inclusion_proof(i, N).unwrap())
        })
    });
    g.bench_function("consistency_proof(old, 1M)", |b| {
        let mut old = 1u64;
        b.iter(|| {
            old = (old + 104_729) % N + 1;
            black_box(tree.consistency_proof(old, N).unwrap())
        })
    });
    g.finish();

    let root_t = time(2_000, || {
        black_box(tree.root_at(999_983).unwrap());
    });
    let incl_t = time(2_000, || {
        black_box(tree.inclusion_proof(123_457, 999_983).unwrap());
    });
    let cons_t = time(2_000, || {
        black_box(tree.consistency_proof(333_333, 999_983).unwrap());
    });
    println!("single operations at ~1M leaves (ratio to one node_hash = {one_hash:?}):");
    println!(
        "  root_at(999983) .................... {root_t:?} ({:.1} hashes)",
        ratio(root_t)
    );
    println!(
        "  inclusion_proof(123457, 999983) .... {incl_t:?} ({:.1} hashes)",
        ratio(incl_t)
    );
    println!(
        "  consistency_proof(333333, 999983) .. {cons_t:?} ({:.1} hashes)",
        ratio(cons_t)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
