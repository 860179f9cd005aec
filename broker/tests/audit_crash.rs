//! Crash safety of the audit log: the real `writ-broker serve` is killed
//! with SIGKILL in the middle of a load of enrollments, attestations and
//! token requests from several swtpm hosts, then restarted on the same
//! database. Every token any client received has its `token_minted` leaf
//! (same digest, at the token's own `audit_index`), every stored token has
//! one, and `writ-broker audit verify` passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use audit_support::*;
use verifier_lib::crypto::HashAlg;
use writ_attester::commands;

/// Tokens clients hold before the kill.
const TOKENS_BEFORE_KILL: usize = 24;

struct Received {
    token: Vec<u8>,
    cti: Vec<u8>,
    audit_index: Option<u64>,
}

#[test]
fn every_token_a_client_received_survives_kill_9_in_the_log() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Arc::new(Workload::new("load"));
    let dir = tempfile::tempdir().unwrap();
    let pol = policy("crash-1", &pcrs, &[("load", w.digest)]);
    let extra = "checkpoint_interval_secs = 1";
    let mut broker = BrokerProc::start(dir.path(), &pol, &roots, extra);
    let hosts: Vec<Host> = (0..3).map(|_| Host::new(&broker.url())).collect();

    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = hosts
        .into_iter()
        .map(|h| {
            let (received, stop, w) = (received.clone(), stop.clone(), w.clone());
            std::thread::spawn(move || {
                // Own the whole host (swtpm, state dir) in the thread.
                let h = h;
                // Enrollment is part of the load (it may be what gets killed).
                if let Err(e) = commands::enroll(&h.settings, writ_attester::tpm::AkAlg::EccP256) {
                    eprintln!("enrollment failed: {e}");
                    return;
                }
                let program = w.program();
                let mut failures = 0;
                while !stop.load(Ordering::SeqCst) && failures < 3 {
                    match commands::obtain_token(&h.settings, "load", &program) {
                        Ok((token, v)) => {
                            failures = 0;
                            received.lock().unwrap().push(Received {
                                token,
                                cti: v.claims.cti.clone(),
                                audit_index: v.claims.audit_index,
                            });
                        }
                        Err(e) => {
                            eprintln!("token request failed: {e:?}");
                            failures += 1;
                        }
                    }
                    let _ = commands::attest(&h.settings);
                }
            })
        })
        .collect();
    while received.lock().unwrap().len() < TOKENS_BEFORE_KILL {
        assert!(
            threads.iter().any(|t| !t.is_finished()),
            "every client stopped before {TOKENS_BEFORE_KILL} tokens"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    broker.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let received = std::mem::take(&mut *received.lock().unwrap());
    assert!(received.len() >= TOKENS_BEFORE_KILL);

    // Restart on the same state: the broker re-opens the log (checking it
    // against its newest checkpoint) and signs the leaves not yet signed.
    let broker = BrokerProc::start(dir.path(), &pol, &roots, extra);
    let (code, json, out) = audit(&["verify", "--url", &broker.url()]);
    assert_eq!(code, 0, "{json} {}", String::from_utf8_lossy(&out.stderr));
    let keys = broker.keys_dir();
    let (code, json) = verify_db(&broker.db(), &keys, &[]);
    assert_eq!(code, 0, "{json}");

    // Every token leaf in the log, by token digest.
    let mut minted: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut start = 0u64;
    loop {
        let (status, page) = broker.get_json_operator(&format!("/v1/audit/entries?start={start}"));
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        for e in entries {
            let d = &e["decoded"]["decision"];
            if d["kind"] == "token_minted" {
                minted.insert(
                    d["token_digest"].as_str().unwrap().to_owned(),
                    (
                        e["index"].as_u64().unwrap(),
                        d["cti"].as_str().unwrap().to_owned(),
                    ),
                );
            }
        }
        start += u64::try_from(entries.len()).unwrap();
        if start >= page["tree_size"].as_u64().unwrap() {
            break;
        }
    }
    for r in &received {
        let digest = hex::encode(HashAlg::Sha256.digest(&r.token));
        let (index, cti) = minted
            .get(&digest)
            .unwrap_or_else(|| panic!("token {} has no leaf", hex::encode(&r.cti)));
        assert_eq!(*cti, hex::encode(&r.cti));
        assert_eq!(Some(*index), r.audit_index);
    }
    // And no token row exists without its leaf.
    let db = sqlite(&broker.db());
    let rows = db.count("SELECT COUNT(*) FROM tokens");
    assert_eq!(usize::try_from(rows).unwrap(), minted.len());
    assert!(minted.len() >= received.len());
}
