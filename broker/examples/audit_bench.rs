//! Audit-log measurements (not a test; figures are printed, with ratios to
//! a baseline measured in the same run):
//!
//! 1. appends/s through the audit writer on SQLite (WAL, synchronous=FULL),
//!    each append a `nonce_issued` leaf, from 64 concurrent
//!    callers: group commit (`max_batch` 256) vs one transaction per append
//!    (`max_batch` 1, same code path);
//! 2. inclusion and consistency proof generation at 1M leaves;
//! 3. the whole-log audit behind `writ-broker audit verify --db` at 1M
//!    leaves (read from SQLite + recompute + checkpoint checks).
//!
//! `cargo run --release -p broker --example audit_bench [-- LEAVES]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use verifier_lib::audit::{verify_log_rows, CheckpointSigner, Decision, Leaf, LogRow, MerkleTree};
use writ_broker::audit::{AuditInstruments, AuditLog};
use writ_broker::clock::SystemClock;
use writ_broker::config::AuditConfig;
use writ_broker::store::audit::StateChange;
use writ_broker::store::Store;

const CALLERS: u64 = 64;

async fn open(dir: &std::path::Path, max_batch: usize) -> (Store, AuditLog) {
    let store = Store::open(&format!("sqlite://{}", dir.join("b.db").display()))
        .await
        .unwrap();
    let cfg = AuditConfig {
        origin: "bench/audit".into(),
        checkpoint_interval_secs: 10,
        checkpoint_min_leaves: 1 << 40,
        max_batch,
        ..AuditConfig::default()
    };
    let signer = CheckpointSigner::generate("bench/audit").unwrap();
    let log = AuditLog::start(
        store.clone(),
        Arc::new(SystemClock),
        signer,
        &cfg,
        "bench",
        AuditInstruments::none(),
    )
    .await
    .unwrap();
    (store, log)
}

/// `total` appends from CALLERS concurrent callers; returns appends/s.
async fn appends(log: &AuditLog, total: u64, tag: u64) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / CALLERS {
                let mut nonce = [0u8; 24];
                nonce[..8].copy_from_slice(&tag.to_be_bytes());
                nonce[8..16].copy_from_slice(&c.to_be_bytes());
                nonce[16..].copy_from_slice(&i.to_be_bytes());
                let leaf = Leaf::new(
                    0,
                    Decision::NonceIssued {
                        host: format!("host-{c}"),
                        nonce_digest: nonce.to_vec(),
                    },
                );
                log.append(StateChange::Nothing, vec![leaf]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (total / CALLERS * CALLERS) as f64 / start.elapsed().as_secs_f64()
}

fn mean<F: FnMut(u64)>(iters: u64, mut f: F) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed() / u32::try_from(iters).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let leaves: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);

    // 1. Group commit vs one transaction per append.
    let d1 = tempfile::tempdir().unwrap();
    let (_s1, single) = open(d1.path(), 1).await;
    let base = appends(&single, 2_048, 1).await;
    let d2 = tempfile::tempdir().unwrap();
    let (_s2, grouped) = open(d2.path(), 256).await;
    let group = appends(&grouped, 32_768, 2).await;
    println!("appends/s, {CALLERS} concurrent callers, SQLite WAL synchronous=FULL:");
    println!("  one transaction per append (baseline): {base:>10.0}/s");
    println!(
        "  group commit (max_batch 256):          {group:>10.0}/s  ({:.1}x baseline)",
        group / base
    );

    // 2. Proofs at `leaves` leaves.
    let mut tree = MerkleTree::new();
    tree.reserve(usize::try_from(leaves).unwrap());
    let build = Instant::now();
    for i in 0..leaves {
        tree.push(verifier_lib::audit::leaf_hash(&i.to_be_bytes()));
    }
    let build = build.elapsed();
    let step = leaves / 997 + 1;
    let incl = mean(1000, |i| {
        std::hint::black_box(tree.inclusion_proof((i * step) % leaves, leaves).unwrap());
    });
    let cons = mean(1000, |i| {
        std::hint::black_box(
            tree.consistency_proof((i * step) % leaves + 1, leaves)
                .unwrap(),
        );
    });
    let sha = mean(100_000, |i| {
        std::hint::black_box(verifier_lib::audit::node_hash(&[i as u8; 32], &[1; 32]));
    });
    println!("proofs at {leaves} leaves (tree built in {build:?}):");
    println!(
        "  inclusion proof:   {incl:?}  ({:.0}x one node hash of {sha:?})",
        incl.as_secs_f64() / sha.as_secs_f64()
    );
    println!(
        "  consistency proof: {cons:?}  ({:.0}x one node hash)",
        cons.as_secs_f64() / sha.as_secs_f64()
    );

    // 3. Whole-log audit at `leaves` leaves, on a log the writer produced.
    let d3 = tempfile::tempdir().unwrap();
    let (_s3, big) = open(d3.path(), 10_000).await;
    let fill = Instant::now();
    let filled = appends(&big, leaves, 3).await;
    let fill = fill.elapsed();
    let cp = big.checkpoint_now().await.unwrap().unwrap();
    let vkey = big.vkey().to_owned();
    drop(big);
    let path = d3.path().join("b.db");
    let (read, audited, report) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let data = writ_broker::audit::source::from_db(&path).unwrap();
        let read = t.elapsed();
        let t = Instant::now();
        let rows: Vec<LogRow<'_>> = data
            .rows
            .iter()
            .map(|(index, leaf, stored)| LogRow {
                index: *index,
                leaf,
                stored_hash: *stored,
            })
            .collect();
        let report = verify_log_rows(&rows, &data.checkpoints, &vkey, None).unwrap();
        (read, t.elapsed(), report)
    })
    .await
    .unwrap();
    assert_eq!(report.tree_size, cp.size);
    println!(
        "whole-log audit of {} leaves (filled at {filled:.0} appends/s in {fill:?}, max_batch 10000):",
        report.tree_size
    );
    println!("  read from SQLite: {read:?}");
    println!("  verify (decode + hash + checkpoints): {audited:?}");
    println!("  total: {:?}", read + audited);
}
