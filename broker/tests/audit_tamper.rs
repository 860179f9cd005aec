//! Tampering with a real broker's audit log is detected by the real
//! `writ-broker audit verify`, at the right index. The log is produced by the
//! `writ-broker serve` binary from real enrollments, attestations and token
//! requests of swtpm hosts; each tamper case edits a copy of its SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_support;

use std::path::{Path, PathBuf};

use audit_support::*;
use verifier_lib::audit::{
    leaf_hash, open_checkpoint, sign_checkpoint, verify_inclusion, Checkpoint, CheckpointSigner,
    Decision, Hash, Leaf, MerkleTree,
};
use writ_attester::commands;

/// A stopped broker's state directory with the log it produced.
struct Produced {
    _dir: tempfile::TempDir,
    db: PathBuf,
    keys: PathBuf,
    leaves: Vec<Leaf>,
    /// A checkpoint a client saved mid-way.
    trusted: PathBuf,
    trusted_size: u64,
    host1: String,
    host2: String,
    token_cti: String,
}

fn produce() -> Produced {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("hello");
    let dir = tempfile::tempdir().unwrap();
    let pol = policy("audit-1", &pcrs, &[("hello", w.digest)]);
    let mut broker = BrokerProc::start(
        dir.path(),
        &pol,
        &roots,
        "checkpoint_min_leaves = 1\ncheckpoint_interval_secs = 3600",
    );
    let h1 = Host::new(&broker.url());
    let h2 = Host::new(&broker.url());
    let host1 = h1.enroll();
    let host2 = h2.enroll();
    assert_eq!(commands::attest(&h1.settings).unwrap().verdict, "affirming");
    let (token, verified) = commands::obtain_token(&h1.settings, "hello", &w.program()).unwrap();
    // Denied: a workload the policy does not list.
    assert!(commands::obtain_token(&h2.settings, "other", &w.program()).is_err());
    // Denied: measurements changed.
    h2.extend_pcr7();
    assert_eq!(
        commands::attest(&h2.settings).unwrap().verdict,
        "contraindicated"
    );

    // The token carries the index of its own leaf; the broker proves it is
    // in the log under a signed checkpoint.
    let index = verified
        .claims
        .audit_index
        .expect("token carries audit_index");
    let (status, note) = broker.get_text("/v1/audit/checkpoint");
    assert_eq!(status, 200);
    let vkey = std::fs::read_to_string(dir.path().join("keys/checkpoint-key.vkey")).unwrap();
    let cp = open_checkpoint(&note, vkey.trim()).unwrap();
    assert!(cp.size > index);
    let (status, proof) = broker.get_json(&format!(
        "/v1/audit/proof/inclusion?index={index}&tree_size={}",
        cp.size
    ));
    assert_eq!(status, 200, "{proof}");
    let hashes: Vec<Hash> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    let (_, entries) = broker.get_json_operator(&format!(
        "/v1/audit/entries?start={index}&end={}",
        index + 1
    ));
    let leaf = &entries["entries"][0];
    assert_eq!(leaf["decoded"]["decision"]["kind"], "token_minted");
    assert_eq!(
        leaf["decoded"]["decision"]["token_digest"],
        hex::encode(verifier_lib::crypto::HashAlg::Sha256.digest(&token))
    );
    let lh: Hash = hex::decode(leaf["leaf_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    verify_inclusion(&lh, index, cp.size, &hashes, &cp.root).unwrap();
    let trusted = dir.path().join("trusted-checkpoint");
    std::fs::write(&trusted, &note).unwrap();

    // A policy reload is a logged decision.
    let pol2 = policy("audit-2", &pcrs, &[("hello", w.digest)]);
    std::fs::write(dir.path().join("policy.toml"), pol2).unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (_, e) = broker.get_json_operator("/v1/audit/entries?start=0");
        reloaded = e["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["decoded"]["decision"]["policy_id"] == "audit-2");
        if reloaded {
            break;
        }
    }
    assert!(reloaded, "policy reload was not logged");
    // More decisions after the saved checkpoint.
    assert_eq!(commands::attest(&h1.settings).unwrap().verdict, "affirming");
    commands::obtain_token(&h1.settings, "hello", &w.program()).unwrap();
    broker.stop();

    let db = dir.path().join("writ.db");
    let leaves = read_leaves(&db);
    Produced {
        db,
        keys: dir.path().join("keys"),
        leaves,
        trusted,
        trusted_size: cp.size,
        host1,
        host2,
        token_cti: hex::encode(&verified.claims.cti),
        _dir: dir,
    }
}

fn read_leaves(db: &Path) -> Vec<Leaf> {
    let s = sqlite(db);
    let mut out = Vec::new();
    let n = s.checkpoints().last().unwrap().1;
    for i in 0..n {
        out.push(Leaf::decode(&s.leaf(i).0).unwrap());
    }
    out
}

/// Index of the first leaf of `kind` at or after `from` that is alone in
/// its entry (an enrollment: one leaf per decision, so checkpoints bracket
/// it).
fn find(p: &Produced, kind: &str, from: usize) -> i64 {
    let i = (from..p.leaves.len())
        .find(|i| p.leaves[*i].decision.kind() == kind)
        .unwrap();
    i64::try_from(i).unwrap()
}

fn copy(p: &Produced, name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let to = d.path().join(name);
    copy_db(&p.db, &to);
    (d, to)
}

fn altered_enrollment_leaf(p: &Produced, k: i64) -> Vec<u8> {
    let mut leaf = p.leaves[usize::try_from(k).unwrap()].clone();
    match &mut leaf.decision {
        Decision::Enrollment { ak_name, .. } => ak_name[0] ^= 1,
        other => panic!("not an enrollment leaf: {other:?}"),
    }
    leaf.encode()
}

fn expect(result: (i32, serde_json::Value), error: &str) -> serde_json::Value {
    let (code, json) = result;
    assert_eq!(code, 1, "expected failure {error}: {json}");
    assert_eq!(json["error"], error, "{json}");
    json
}

#[test]
fn every_tamper_is_detected_at_the_right_index() {
    let p = produce();
    let last_cp_size = i64::try_from(p.leaves.len()).unwrap();
    // The untouched log verifies, alone and against the saved checkpoint.
    let (code, json) = verify_db(&p.db, &p.keys, &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["report"]["tree_size"], last_cp_size);
    let trusted = p.trusted.to_str().unwrap();
    let (code, json) = verify_db(&p.db, &p.keys, &["--trusted-checkpoint", trusted]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["report"]["trusted_size"], p.trusted_size);

    let k = find(&p, "enrollment", 1);

    // 1. A leaf edited in place (stored hash left alone): named exactly.
    let (_d, db) = copy(&p, "edit.db");
    sqlite(&db).exec(
        "UPDATE audit_leaves SET leaf = $1 WHERE idx = $2",
        &[
            SqlValue::Blob(altered_enrollment_leaf(&p, k)),
            SqlValue::Int(k),
        ],
    );
    let j = expect(verify_db(&db, &p.keys, &[]), "leaf_hash_mismatch");
    assert_eq!(j["first_bad_index"], k);

    // 2. A leaf edited together with its stored hash: the first checkpoint
    //    over it no longer matches; checkpoints after each batch bracket it.
    let (_d, db) = copy(&p, "edit2.db");
    let new = altered_enrollment_leaf(&p, k);
    sqlite(&db).exec(
        "UPDATE audit_leaves SET leaf = $1, leaf_hash = $2 WHERE idx = $3",
        &[
            SqlValue::Blob(new.clone()),
            SqlValue::Blob(leaf_hash(&new).to_vec()),
            SqlValue::Int(k),
        ],
    );
    let j = expect(verify_db(&db, &p.keys, &[]), "checkpoint_root_mismatch");
    assert_eq!(j["suspect_range"], serde_json::json!([k, k + 1]), "{j}");
    assert_eq!(j["first_bad_index"], k);

    // 3. A deleted row.
    let (_d, db) = copy(&p, "delete.db");
    sqlite(&db).exec(
        "DELETE FROM audit_leaves WHERE idx = $1",
        &[SqlValue::Int(k)],
    );
    let j = expect(verify_db(&db, &p.keys, &[]), "index_gap");
    assert_eq!(j["first_bad_index"], k);

    // 4. Two rows swapped (leaf, hash and time moved together).
    let (_d, db) = copy(&p, "swap.db");
    let s = sqlite(&db);
    let (a, ah) = s.leaf(k);
    let (b, bh) = s.leaf(k + 1);
    assert_ne!(a, b);
    s.exec(
        "UPDATE audit_leaves SET leaf = $1, leaf_hash = $2 WHERE idx = $3",
        &[SqlValue::Blob(b), SqlValue::Blob(bh), SqlValue::Int(k)],
    );
    s.exec(
        "UPDATE audit_leaves SET leaf = $1, leaf_hash = $2 WHERE idx = $3",
        &[SqlValue::Blob(a), SqlValue::Blob(ah), SqlValue::Int(k + 1)],
    );
    let j = expect(verify_db(&db, &p.keys, &[]), "checkpoint_root_mismatch");
    assert_eq!(j["first_bad_index"], k, "{j}");

    // 5. Truncation: the stored checkpoints name the first missing index...
    let (_d, db) = copy(&p, "trunc.db");
    let cut = i64::try_from(p.trusted_size).unwrap() - 2;
    sqlite(&db).exec(
        "DELETE FROM audit_leaves WHERE idx >= $1",
        &[SqlValue::Int(cut)],
    );
    let j = expect(verify_db(&db, &p.keys, &[]), "truncated");
    assert_eq!(j["first_bad_index"], cut);
    // ...and if the checkpoints are cut too, a client's saved one does.
    sqlite(&db).exec(
        "DELETE FROM audit_checkpoints WHERE size > $1",
        &[SqlValue::Int(cut)],
    );
    let (code, _) = verify_db(&db, &p.keys, &[]);
    assert_eq!(
        code, 0,
        "a consistently cut log needs an outside checkpoint"
    );
    let j = expect(
        verify_db(&db, &p.keys, &["--trusted-checkpoint", trusted]),
        "truncated",
    );
    assert_eq!(j["first_bad_index"], cut);

    // 6. A checkpoint re-signed with another key (same origin name).
    let (_d, db) = copy(&p, "resign.db");
    let s = sqlite(&db);
    let cps = s.checkpoints();
    let (pos, (id, size, note)) = cps.iter().enumerate().nth(cps.len() / 2).unwrap();
    let vkey = std::fs::read_to_string(p.keys.join("checkpoint-key.vkey")).unwrap();
    let body = open_checkpoint(note, vkey.trim()).unwrap();
    let other = CheckpointSigner::generate(ORIGIN).unwrap();
    s.exec(
        "UPDATE audit_checkpoints SET note = $1 WHERE id = $2",
        &[
            SqlValue::Text(sign_checkpoint(&other, &body).unwrap()),
            SqlValue::Int(*id),
        ],
    );
    let j = expect(verify_db(&db, &p.keys, &[]), "checkpoint_invalid");
    assert_eq!(j["checkpoint"], pos);
    assert_eq!(j["checkpoint_size"], *size);
}

#[test]
fn a_forked_log_is_caught_by_a_client_holding_an_older_checkpoint() {
    let p = produce();
    let k = find(&p, "enrollment", 1);
    assert!(u64::try_from(k).unwrap() < p.trusted_size);
    // The operator (who holds the real checkpoint key) rewrites leaf k and
    // re-signs every checkpoint from there: the log is consistent in itself.
    let (_d, db) = copy(&p, "fork.db");
    let s = sqlite(&db);
    let new = altered_enrollment_leaf(&p, k);
    s.exec(
        "UPDATE audit_leaves SET leaf = $1, leaf_hash = $2 WHERE idx = $3",
        &[
            SqlValue::Blob(new.clone()),
            SqlValue::Blob(leaf_hash(&new).to_vec()),
            SqlValue::Int(k),
        ],
    );
    let mut tree = MerkleTree::new();
    for (i, l) in p.leaves.iter().enumerate() {
        let bytes = if i64::try_from(i).unwrap() == k {
            new.clone()
        } else {
            l.encode()
        };
        tree.push(leaf_hash(&bytes));
    }
    let der = std::fs::read(p.keys.join("checkpoint-key.pk8")).unwrap();
    let real = CheckpointSigner::from_pkcs8(ORIGIN, &der).unwrap();
    for (id, size, _) in s.checkpoints() {
        if size > k {
            let size = u64::try_from(size).unwrap();
            let cp = Checkpoint::new(ORIGIN, size, tree.root_at(size).unwrap());
            s.exec(
                "UPDATE audit_checkpoints SET note = $1 WHERE id = $2",
                &[
                    SqlValue::Text(sign_checkpoint(&real, &cp).unwrap()),
                    SqlValue::Int(id),
                ],
            );
        }
    }
    let (code, json) = verify_db(&db, &p.keys, &[]);
    assert_eq!(code, 0, "the fork is self-consistent: {json}");
    let j = expect(
        verify_db(
            &db,
            &p.keys,
            &["--trusted-checkpoint", p.trusted.to_str().unwrap()],
        ),
        "fork",
    );
    let range = j["suspect_range"].as_array().unwrap();
    assert!(
        range[0].as_i64().unwrap() <= k && k < range[1].as_i64().unwrap(),
        "{j}"
    );
    assert_eq!(range[1], p.trusted_size);
}

#[test]
fn show_explains_a_token_and_a_denial_from_the_log_alone() {
    let p = produce();
    let db = p.db.to_str().unwrap();
    let keys = p.keys.to_str().unwrap();
    let (code, j, _) = audit(&[
        "show",
        "--db",
        db,
        "--keys-dir",
        keys,
        "--token",
        &p.token_cti,
    ]);
    assert_eq!(code, 0, "{j}");
    let kinds: Vec<&str> = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["leaf"]["decision"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "policy_activated",
            "enrollment",
            "appraisal",
            "token_minted"
        ],
        "{j}"
    );
    let entries = j["entries"].as_array().unwrap();
    assert_eq!(entries[1]["leaf"]["decision"]["host"], p.host1);
    assert_eq!(entries[1]["leaf"]["decision"]["accepted"], true);
    assert_eq!(entries[2]["leaf"]["decision"]["verdict"], "pass");
    assert_eq!(entries[3]["leaf"]["decision"]["cti"], p.token_cti);

    let (code, j, _) = audit(&["show", "--db", db, "--keys-dir", keys, "--host", &p.host2]);
    assert_eq!(code, 0, "{j}");
    let fails: Vec<&serde_json::Value> = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["leaf"]["decision"]["verdict"] == "fail")
        .collect();
    assert_eq!(fails.len(), 2, "{j}");
    let failures = |e: &serde_json::Value| e["leaf"]["decision"]["failures"].to_string();
    assert!(
        failures(fails[0]).contains("workload"),
        "{}",
        failures(fails[0])
    );
    assert!(failures(fails[1]).contains("pcr"), "{}", failures(fails[1]));
    // No leaf of host 1 leaks into host 2's history.
    assert!(j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["leaf"]["decision"]["host"] != p.host1));
}

/// `audit verify --expect-tokens FILE` reconciles the tokens a client
/// received with the log (the crash-loop script's check): every listed id
/// must have its mint leaf; a missing one fails the check by name.
#[test]
fn verify_reconciles_received_tokens_with_the_log() {
    let p = produce();
    let db = p.db.to_str().unwrap();
    let keys = p.keys.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("tokens.txt");
    std::fs::write(&list, format!("{}\n\n", p.token_cti.to_ascii_uppercase())).unwrap();
    let args = |file: &Path| {
        vec![
            "verify".to_owned(),
            "--db".into(),
            db.to_owned(),
            "--keys-dir".into(),
            keys.to_owned(),
            "--expect-tokens".into(),
            file.to_str().unwrap().to_owned(),
        ]
    };
    let run = |file: &Path| {
        let a = args(file);
        let (code, j, _) = audit(&a.iter().map(String::as_str).collect::<Vec<_>>());
        (code, j)
    };
    let (code, j) = run(&list);
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["expected_tokens"]["listed"], 1, "{j}");
    assert_eq!(j["expected_tokens"]["found"], 1, "{j}");

    let never = "00".repeat(16);
    std::fs::write(&list, format!("{}\n{never}\n", p.token_cti)).unwrap();
    let (code, j) = run(&list);
    assert_eq!(code, 1, "{j}");
    assert_eq!(j["ok"], false);
    assert_eq!(j["error"], "tokens_missing");
    assert_eq!(j["expected_tokens"]["missing"], serde_json::json!([never]));

    let (code, j) = run(&dir.path().join("absent.txt"));
    assert_eq!(code, 2, "{j}");
}

/// Regression: a broker stopped with SIGTERM right after answering left its
/// last leaves without a checkpoint (the writer's own checkpoint was cut
/// off at exit), so a verifier saw a log longer than anything signed. A
/// graceful stop now signs every appended leaf, whatever the thresholds.
#[test]
fn a_graceful_stop_signs_every_appended_leaf() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("hello");
    let dir = tempfile::tempdir().unwrap();
    let pol = policy("stop-1", &pcrs, &[("hello", w.digest)]);
    // Thresholds the test never reaches: only the stop signs.
    let mut broker = BrokerProc::start(
        dir.path(),
        &pol,
        &roots,
        "checkpoint_min_leaves = 1000000\ncheckpoint_interval_secs = 3600",
    );
    let h = Host::new(&broker.url());
    h.enroll();
    assert_eq!(commands::attest(&h.settings).unwrap().verdict, "affirming");
    broker.stop();

    let s = sqlite(&dir.path().join("writ.db"));
    let leaves = s.count("SELECT COUNT(*) FROM audit_leaves");
    assert!(leaves >= 2, "enrollment and attestation leaves: {leaves}");
    let (_, signed, _) = s.checkpoints().last().cloned().unwrap();
    assert_eq!(signed, leaves, "the last checkpoint covers every leaf");
    let (code, json) = verify_db(&dir.path().join("writ.db"), &dir.path().join("keys"), &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["report"]["tree_size"], leaves);
}
