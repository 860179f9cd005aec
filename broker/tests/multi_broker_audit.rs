//! Several brokers appending to ONE audit log on one PostgreSQL database
//! (issue #13 step 3): three brokers under concurrent load through their
//! HTTP APIs, then the log has no gap and no duplicate index, every broker's
//! checkpoints verify under its own published key, each broker proves the
//! inclusion of another broker's leaf against its own newest checkpoint,
//! and `writ-broker audit verify` over the database passes. A checkpoint
//! that does not match the stored prefix is caught by verify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use swtpm_tests::broker::{Backend, BrokerOptions, TestBroker, OPERATOR_TOKEN};
use verifier_lib::audit::{
    open_checkpoint, sign_checkpoint, verify_inclusion, Checkpoint, CheckpointSigner, Decision,
    Hash, Leaf, MerkleTree,
};
use writ_broker::store::audit::{AuditKeyRecord, CheckpointRow, StateChange};

const BROKERS: usize = 3;
const THREADS: usize = 4;
const REQUESTS: usize = 12;

fn opts() -> BrokerOptions {
    BrokerOptions {
        // The log is under test, not appraisal: no measurement rules.
        policy: "id = \"multi-1\"\n[[groups]]\nname = \"default\"\nhosts = [\"*\"]\n\
                 dangerous_accept_any_measurements = true\n"
            .to_owned(),
        ek_roots_pem: Vec::new(),
        bundled_manufacturers: false,
    }
}

fn tweak(name: &'static str) -> impl FnOnce(&mut writ_broker::config::Config) {
    move |cfg| {
        cfg.broker.name = name.to_owned();
        cfg.audit.checkpoint_interval_secs = 1;
        cfg.audit.checkpoint_min_leaves = 8;
        cfg.audit.max_batch = 16;
        cfg.audit.follow_interval_ms = 100;
    }
}

fn fleet() -> Vec<TestBroker> {
    let first =
        TestBroker::start_on_configured(Backend::Postgres, opts(), tweak("broker-1")).unwrap();
    let second = TestBroker::start_joining(&first, opts(), tweak("broker-2")).unwrap();
    let third = TestBroker::start_joining(&first, opts(), tweak("broker-3")).unwrap();
    vec![first, second, third]
}

fn get(b: &TestBroker, path: &str) -> (u16, String) {
    let r = reqwest::blocking::get(format!("{}{path}", b.url())).unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn get_json(b: &TestBroker, path: &str) -> serde_json::Value {
    let (s, t) = get(b, path);
    assert_eq!(s, 200, "{path}: {t}");
    serde_json::from_str(&t).unwrap()
}

fn hash_of(v: &serde_json::Value) -> Hash {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn verify_db(url: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(["audit", "verify", "--db", url])
        .args(extra)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn three_brokers_append_to_one_log_and_each_proves_the_others_leaves() {
    let brokers = fleet();
    let url = brokers[0].storage_url();
    for b in &brokers[1..] {
        assert_eq!(b.storage_url(), url, "the brokers share one database");
    }

    // Concurrent load: operator revocations through every broker's API
    // (two leaves each), and direct appends through each broker's writer.
    std::thread::scope(|s| {
        for (bi, b) in brokers.iter().enumerate() {
            for t in 0..THREADS {
                let base = b.url();
                s.spawn(move || {
                    let http = reqwest::blocking::Client::new();
                    for i in 0..REQUESTS {
                        let r = http
                            .post(format!("{base}/v1/workloads/w-{bi}-{t}-{i}/revoke"))
                            .bearer_auth(OPERATOR_TOKEN)
                            .send()
                            .unwrap();
                        assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
                    }
                });
            }
            s.spawn(move || {
                for i in 0..REQUESTS {
                    let leaf = Leaf::new(
                        i64::try_from(i).unwrap(),
                        Decision::OperatorAction {
                            who: format!("direct-{bi}"),
                            what: format!("append {i}"),
                        },
                    );
                    b.block_on(b.audit.append(StateChange::Nothing, vec![leaf]))
                        .unwrap();
                }
            });
        }
    });

    // Each broker signs over what it sees now (after catching up).
    let mut newest = Vec::new();
    for b in &brokers {
        let cp = b.block_on(b.audit.checkpoint_now()).unwrap().unwrap();
        newest.push(cp);
    }

    // The stored log: indices 0..n, each once, every request's leaf once.
    let rows = brokers[0].block_on(brokers[0].store.audit_leaves(0, u64::MAX >> 1));
    let rows = rows.unwrap();
    let n = u64::try_from(rows.len()).unwrap();
    for (pos, r) in rows.iter().enumerate() {
        assert_eq!(r.index, u64::try_from(pos).unwrap(), "gap or duplicate");
    }
    let mut revoked = BTreeSet::new();
    let mut direct = 0usize;
    let mut first_of_broker = [None; BROKERS];
    for r in &rows {
        match Leaf::decode(&r.leaf).unwrap().decision {
            Decision::WorkloadRevoked { workload, .. } => {
                let bi: usize = workload.split('-').nth(1).unwrap().parse().unwrap();
                first_of_broker[bi].get_or_insert(r.index);
                assert!(revoked.insert(workload.clone()), "{workload} logged twice");
            }
            Decision::OperatorAction { who, .. } if who.starts_with("direct-") => direct += 1,
            _ => {}
        }
    }
    assert_eq!(revoked.len(), BROKERS * THREADS * REQUESTS);
    assert_eq!(direct, BROKERS * REQUESTS);
    // The last checkpoint covers the whole log.
    assert_eq!(newest.last().unwrap().size, n);

    // Every broker published its key; each of its checkpoints verifies
    // under it, and it serves its own newest checkpoint.
    let keys = get_json(&brokers[1], "/v1/audit/keys");
    let published: Vec<&serde_json::Value> = keys["keys"].as_array().unwrap().iter().collect();
    assert_eq!(published.len(), BROKERS, "{keys}");
    let stored_checkpoints = brokers[0]
        .block_on(brokers[0].store.audit_checkpoints(0, u64::MAX))
        .unwrap();
    let mut vkeys = Vec::new();
    for (bi, b) in brokers.iter().enumerate() {
        let vkey = get(b, "/v1/audit/key").1.trim().to_owned();
        let key_id = b.audit.key_id().to_owned();
        let entry = published
            .iter()
            .find(|k| k["key_id"] == key_id.as_str())
            .unwrap_or_else(|| panic!("{key_id} not published: {keys}"));
        assert_eq!(entry["vkey"], vkey.as_str());
        assert_eq!(entry["broker"], format!("broker-{}", bi + 1));
        let own: Vec<&CheckpointRow> = stored_checkpoints
            .iter()
            .filter(|c| c.key_id == key_id)
            .collect();
        assert!(!own.is_empty(), "broker {bi} signed no checkpoint");
        for c in &own {
            let cp = open_checkpoint(&c.note, &vkey).unwrap();
            assert_eq!(cp.size, c.size);
        }
        let (_, note) = get(b, "/v1/audit/checkpoint");
        let served = open_checkpoint(&note, &vkey).unwrap();
        assert_eq!(served.size, newest[bi].size);
        vkeys.push(vkey);

        // A leaf another broker wrote, proved against this broker's own
        // newest checkpoint.
        let other = (bi + 1) % BROKERS;
        let index = first_of_broker[other].unwrap();
        let proof = get_json(b, &format!("/v1/audit/proof/inclusion?index={index}"));
        assert_eq!(proof["tree_size"], served.size, "{proof}");
        let path: Vec<Hash> = proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(hash_of)
            .collect();
        let leaf_hash = verifier_lib::audit::leaf_hash(&rows[usize::try_from(index).unwrap()].leaf);
        assert_eq!(hash_of(&proof["leaf_hash"]), leaf_hash);
        verify_inclusion(&leaf_hash, index, served.size, &path, &served.root).unwrap();
    }

    // The whole log recomputed agrees with the newest checkpoint.
    let mut tree = MerkleTree::new();
    for r in &rows {
        tree.push(verifier_lib::audit::leaf_hash(&r.leaf));
    }
    let last = open_checkpoint(&newest[BROKERS - 1].note, &vkeys[BROKERS - 1]).unwrap();
    assert_eq!(tree.root(), last.root);

    // `writ-broker audit verify` over the database: with the store's own
    // key table (and a warning that it proves consistency only) ...
    let (code, report) = verify_db(&url, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["key_source"], "published_in_store", "{report}");
    assert!(report["warning"].as_str().is_some(), "{report}");
    assert_eq!(report["report"]["tree_size"], n, "{report}");
    assert_eq!(
        report["keys"].as_array().unwrap().len(),
        BROKERS,
        "{report}"
    );
    // ... with the keys pinned out of band ...
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted.vkeys");
    std::fs::write(&trusted, format!("# the fleet\n{}\n", vkeys.join("\n"))).unwrap();
    let (code, report) = verify_db(&url, &["--trusted-keys", trusted.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["key_source"], "trusted_keys", "{report}");
    assert!(report.get("warning").is_none(), "{report}");
    assert_eq!(
        report["report"]["checkpoints_verified"],
        stored_checkpoints.len(),
        "{report}"
    );
    // ... and one broker's key alone does not cover the others' checkpoints.
    let one = dir.path().join("one.vkeys");
    std::fs::write(&one, format!("{}\n", vkeys[0])).unwrap();
    let (code, report) = verify_db(&url, &["--trusted-keys", one.to_str().unwrap()]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["error"], "checkpoint_invalid", "{report}");
}

#[test]
fn verify_detects_a_checkpoint_that_does_not_match_the_stored_prefix() {
    let brokers = fleet();
    let b = &brokers[1];
    for i in 0..5 {
        let leaf = Leaf::new(
            i,
            Decision::OperatorAction {
                who: "test".into(),
                what: format!("append {i}"),
            },
        );
        b.block_on(b.audit.append(StateChange::Nothing, vec![leaf]))
            .unwrap();
    }
    let own = b.block_on(b.audit.checkpoint_now()).unwrap().unwrap();
    let url = brokers[0].storage_url();
    let (code, report) = verify_db(&url, &[]);
    assert_eq!(code, 0, "{report}");

    // A key published in the store (as a broker would at start) signs a
    // checkpoint whose root is not the stored log's at its size.
    let size = b
        .block_on(b.store.audit_leaf_hashes(0, 1000))
        .unwrap()
        .len();
    let size = u64::try_from(size).unwrap();
    let origin = open_checkpoint(&own.note, b.audit.vkey()).unwrap().origin;
    let rogue = CheckpointSigner::generate(&origin).unwrap();
    let key_id = writ_broker::audit::key::key_id_of_vkey(&rogue.vkey()).unwrap();
    b.block_on(b.store.register_audit_key(&AuditKeyRecord {
        key_id: key_id.clone(),
        vkey: rogue.vkey(),
        broker: "rogue".into(),
        added_at: 0,
        retired_at: None,
    }))
    .unwrap();
    let note = sign_checkpoint(&rogue, &Checkpoint::new(&origin, size, [7u8; 32])).unwrap();
    b.block_on(b.store.insert_audit_checkpoint(&CheckpointRow {
        size,
        note,
        created_at: 0,
        key_id,
    }))
    .unwrap();
    let (code, report) = verify_db(&url, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["error"], "checkpoint_root_mismatch", "{report}");
}
