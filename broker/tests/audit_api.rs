//! `/v1/audit/*` against a real in-process broker (no TPM needed): strict
//! query validation with stable codes, proofs that verify against signed
//! checkpoints, logged refusals, and group commit under concurrent appends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use swtpm_tests::broker::{BrokerOptions, TestBroker, OPERATOR_TOKEN};
use verifier_lib::audit::{
    open_checkpoint, verify_consistency, verify_inclusion, Decision, Hash, Leaf,
};
use writ_broker::store::audit::StateChange;

fn broker() -> TestBroker {
    TestBroker::start(BrokerOptions {
        // The log's API is under test, not appraisal: no measurement rules.
        policy: "id = \"api-1\"\n[[groups]]\nname = \"default\"\nhosts = [\"*\"]\n\
                 dangerous_accept_any_measurements = true\n"
            .to_owned(),
        ek_roots_pem: Vec::new(),
        bundled_manufacturers: false,
    })
    .unwrap()
}

fn get(b: &TestBroker, path: &str) -> (u16, String) {
    let r = reqwest::blocking::get(format!("{}{path}", b.url())).unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn get_json(b: &TestBroker, path: &str) -> (u16, serde_json::Value) {
    let (s, t) = get(b, path);
    (s, serde_json::from_str(&t).unwrap())
}

/// GET as an operator: leaf contents included.
fn get_json_operator(b: &TestBroker, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .get(format!("{}{path}", b.url()))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

#[test]
fn bad_queries_are_refused_with_stable_codes() {
    let b = broker();
    for (path, status, code) in [
        ("/v1/audit/entries?start=x", 400, "invalid_query"),
        ("/v1/audit/entries?start=01", 400, "invalid_query"),
        ("/v1/audit/entries?start=-1", 400, "invalid_query"),
        ("/v1/audit/entries?start=0&start=1", 400, "invalid_query"),
        ("/v1/audit/entries?begin=0", 400, "invalid_query"),
        ("/v1/audit/entries?start=99999999999999999999999", 400, "invalid_query"),
        ("/v1/audit/entries?start=2&end=1", 400, "invalid_range"),
        ("/v1/audit/entries?start=500", 400, "beyond_tree"),
        ("/v1/audit/proof/inclusion?tree_size=1", 400, "invalid_query"),
        ("/v1/audit/proof/inclusion?index=0&leaf_hash=00", 400, "invalid_query"),
        ("/v1/audit/proof/inclusion?leaf_hash=zz", 400, "invalid_query"),
        ("/v1/audit/proof/inclusion?index=0&tree_size=500", 400, "beyond_tree"),
        ("/v1/audit/proof/inclusion?index=5&tree_size=1", 400, "beyond_tree"),
        (
            "/v1/audit/proof/inclusion?leaf_hash=0000000000000000000000000000000000000000000000000000000000000000",
            404,
            "leaf_not_found",
        ),
        ("/v1/audit/proof/consistency", 400, "invalid_query"),
        ("/v1/audit/proof/consistency?from=1&to=0", 400, "invalid_range"),
        ("/v1/audit/proof/consistency?from=0&to=500", 400, "beyond_tree"),
        ("/v1/audit/checkpoints?from_size=a", 400, "invalid_query"),
        ("/v1/audit/checkpoints?limit=0", 400, "invalid_query"),
        ("/v1/audit/checkpoints?limit=x", 400, "invalid_query"),
        ("/v1/audit/checkpoints?cursor=1", 400, "invalid_query"),
    ] {
        let (s, j) = get_json(&b, path);
        assert_eq!((s, j["error"]["code"].as_str().unwrap()), (status, code), "{path}: {j}");
    }
}

#[test]
fn refusals_are_logged_and_proofs_verify_against_signed_checkpoints() {
    let b = broker();
    let (_, vkey) = get(&b, "/v1/audit/key");
    let vkey = vkey.trim().to_owned();
    let (_, first) = get(&b, "/v1/audit/checkpoint");
    let old = open_checkpoint(&first, &vkey).unwrap();

    // An enrollment with an EK public area that parses but no usable EK
    // certificate is refused, and the refusal is logged with its reason.
    let ek_public = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../verifier-lib/tests/vectors/quote/keylime-swtpm/sha256-pcr15-16-22/ek.pub"),
    )
    .unwrap();
    {
        let body = serde_json::json!({
            "ek_public": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&ek_public),
            "ak_public": "",
            "ek_cert": "",
            "ek_chain": [],
        });
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v1/enroll/start", b.url()))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    }
    // Coalesced (finding 3): nothing is logged until the source's refusal
    // window closes, then one summary leaf.
    let refusals = |b: &TestBroker| -> Vec<serde_json::Value> {
        let (_, e) = get_json_operator(b, "/v1/audit/entries?start=0");
        e["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["decoded"]["decision"].clone())
            .filter(|d| d["kind"] == "enrollment")
            .collect()
    };
    assert!(refusals(&b).is_empty());
    b.clock.advance(61);
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = refusals(&b);
        if !refused.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["accepted"], false);
    let reason = refused[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("1 refusals from ") && reason.ends_with(": invalid_ak_publicx1"),
        "{reason}"
    );
    assert!(refused[0]["host"]
        .as_str()
        .unwrap()
        .starts_with("refusals:"));

    // Concurrent appends through the writer: consecutive indexes, no gaps.
    let audit = b.audit.clone();
    let n = 200u64;
    let indexes: Vec<u64> = b.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..n {
            let a = audit.clone();
            tasks.push(tokio::spawn(async move {
                let leaf = Leaf::new(
                    i64::try_from(i).unwrap(),
                    Decision::OperatorAction {
                        who: "test".into(),
                        what: format!("action {i}"),
                    },
                );
                a.append(StateChange::Nothing, vec![leaf]).await.unwrap()
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let mut sorted = indexes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), indexes.len());
    assert_eq!(sorted.last().unwrap() - sorted.first().unwrap() + 1, n);

    let cp = b.block_on(audit.checkpoint_now()).unwrap().unwrap();
    let new = open_checkpoint(&cp.note, &vkey).unwrap();
    assert!(new.size >= old.size + n);

    // Consistency from the first checkpoint to the new one.
    let (s, p) = get_json(
        &b,
        &format!(
            "/v1/audit/proof/consistency?from={}&to={}",
            old.size, new.size
        ),
    );
    assert_eq!(s, 200, "{p}");
    verify_consistency(
        old.size,
        new.size,
        &old.root,
        &new.root,
        &hashes(&p["proof"]),
    )
    .unwrap();

    // Inclusion of one appended leaf, looked up by its hash.
    let idx = indexes[17];
    let (_, e) = get_json_operator(
        &b,
        &format!("/v1/audit/entries?start={idx}&end={}", idx + 1),
    );
    let entry = &e["entries"][0];
    assert_eq!(entry["decoded"]["decision"]["kind"], "operator_action");
    let lh = entry["leaf_hash"].as_str().unwrap();
    let (s, p) = get_json(&b, &format!("/v1/audit/proof/inclusion?leaf_hash={lh}"));
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["index"], idx);
    assert_eq!(p["tree_size"], new.size);
    let lh: Hash = hex::decode(lh).unwrap().try_into().unwrap();
    verify_inclusion(&lh, idx, new.size, &hashes(&p["proof"]), &new.root).unwrap();
    // A proof against a root it does not belong to fails.
    assert!(verify_inclusion(&lh, idx, new.size, &hashes(&p["proof"]), &old.root).is_err());

    // All checkpoints are kept, in order.
    let (_, all) = get_json(&b, "/v1/audit/checkpoints");
    let sizes: Vec<u64> = all["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*sizes.last().unwrap(), new.size);
}

/// `/v1/audit/checkpoints` answers in pages (default 100, at most 1000):
/// each names where the next starts, the last names none, and walking the
/// pages yields every checkpoint once, in order.
#[test]
fn checkpoints_come_in_bounded_pages() {
    let b = broker();
    let audit = b.audit.clone();
    // 205 checkpoints: one per appended leaf.
    b.block_on(async {
        for i in 0..205i64 {
            let leaf = Leaf::new(
                i,
                Decision::OperatorAction {
                    who: "test".into(),
                    what: format!("page {i}"),
                },
            );
            audit
                .append(StateChange::Nothing, vec![leaf])
                .await
                .unwrap();
            audit.checkpoint_now().await.unwrap().unwrap();
        }
    });
    let sizes = |page: &serde_json::Value| -> Vec<u64> {
        page["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["size"].as_u64().unwrap())
            .collect()
    };
    let (s, first) = get_json(&b, "/v1/audit/checkpoints");
    assert_eq!(s, 200, "{first}");
    let first_sizes = sizes(&first);
    assert_eq!(first_sizes.len(), 100, "default page size");
    assert_eq!(
        first["next_from_size"].as_u64(),
        Some(first_sizes.last().unwrap() + 1)
    );
    // A limit above the maximum is lowered to it; the whole log fits.
    let (_, big) = get_json(&b, "/v1/audit/checkpoints?limit=5000");
    let all = sizes(&big);
    assert!(all.len() >= 205 && all.len() <= 1000, "{}", all.len());
    assert!(big["next_from_size"].is_null());
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    // Walking small pages gives the same checkpoints, each once.
    let mut walked = Vec::new();
    let mut from = Some(0u64);
    let mut pages = 0;
    while let Some(f) = from {
        let (s, page) = get_json(&b, &format!("/v1/audit/checkpoints?from_size={f}&limit=7"));
        assert_eq!(s, 200, "{page}");
        let got = sizes(&page);
        assert!(got.len() <= 7);
        walked.extend(got);
        from = page["next_from_size"].as_u64();
        pages += 1;
    }
    assert_eq!(walked, all);
    assert_eq!(pages, all.len().div_ceil(7));
    // The audit CLI's `--url` source walks the pages too.
    let notes: Vec<String> = big["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["note"].as_str().unwrap().to_owned())
        .collect();
    let fetched = writ_broker::audit::source::from_url(&b.url(), None, None).unwrap();
    assert_eq!(fetched.checkpoints, notes);
}

/// Issue #12 finding 6: the public `/v1/audit/entries` serves leaf hashes
/// and a summary (kind, time, host, verdict), never the policy values,
/// operator names or revocation reasons inside the leaves; an operator gets
/// the leaves; the log stays verifiable from the public hashes alone.
#[test]
fn finding6_public_audit_entries_hide_leaf_contents() {
    let b = broker();
    let allowed_pcr = hex::encode([0x5e; 32]);
    let failure = verifier_lib::policy::Failure::PcrNotAllowed {
        bank: verifier_lib::crypto::HashAlg::Sha256,
        pcr: 7,
        actual: hex::encode([0x11; 32]),
        allowed: vec![allowed_pcr.clone()],
    };
    let leaves = vec![
        Leaf::new(
            100,
            Decision::Appraisal {
                host: "host-a".into(),
                evidence_digest: vec![1; 32],
                policy_id: "secret-policy-id".into(),
                policy_hash: vec![2; 32],
                verdict: verifier_lib::audit::Verdict::Fail,
                failures: vec![serde_json::to_string(&failure).unwrap()],
                tpm_clock: None,
                nonce_digest: None,
                policy_signer: None,
                warnings: vec![],
            },
        ),
        Leaf::new(
            101,
            Decision::HostRevoked {
                host: "host-a".into(),
                reason: "stolen-laptop-reason".into(),
            },
        ),
        Leaf::new(
            102,
            Decision::OperatorAction {
                who: "alice-operator".into(),
                what: "revoke host-a".into(),
            },
        ),
    ];
    let audit = b.audit.clone();
    b.block_on(async {
        audit.append(StateChange::Nothing, leaves).await.unwrap();
        audit.checkpoint_now().await.unwrap();
    });
    let secrets = [
        allowed_pcr.as_str(),
        "secret-policy-id",
        "stolen-laptop-reason",
        "alice-operator",
    ];

    let (s, public) = get(&b, "/v1/audit/entries?start=0");
    assert_eq!(s, 200, "{public}");
    for secret in secrets {
        assert!(!public.contains(secret), "{secret} leaked: {public}");
    }
    let public: serde_json::Value = serde_json::from_str(&public).unwrap();
    assert_eq!(public["full"], false);
    let entries = public["entries"].as_array().unwrap();
    let appraisal = entries
        .iter()
        .find(|e| e["summary"]["kind"] == "appraisal")
        .unwrap();
    assert_eq!(appraisal["summary"]["host"], "host-a");
    assert_eq!(appraisal["summary"]["verdict"], "fail");
    assert_eq!(appraisal["summary"]["time"], 100);
    assert_eq!(appraisal["leaf_hash"].as_str().unwrap().len(), 64);
    assert!(entries
        .iter()
        .all(|e| e.get("leaf").is_none() && e.get("decoded").is_none()));

    let (s, full) = get_json_operator(&b, "/v1/audit/entries?start=0");
    assert_eq!(s, 200, "{full}");
    assert_eq!(full["full"], true);
    let text = full.to_string();
    for secret in secrets {
        assert!(text.contains(secret), "operator view lacks {secret}");
    }
    // A token that does not authenticate is refused, not served the public form.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/v1/audit/entries?start=0", b.url()))
        .bearer_auth("not-a-token")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Outsiders verify the log from the public hashes; operators from leaves.
    let vkey = get(&b, "/v1/audit/key").1;
    let public = writ_broker::audit::source::from_url(&b.url(), None, None).unwrap();
    assert!(public.hashes_only);
    let hashes: Vec<Hash> = public.rows.iter().map(|r| r.2.unwrap()).collect();
    let report =
        verifier_lib::audit::verify_log_hashes(&hashes, &public.checkpoints, vkey.trim(), None)
            .unwrap();
    assert_eq!(report.tree_size, u64::try_from(hashes.len()).unwrap());
    let full = writ_broker::audit::source::from_url(&b.url(), None, Some(OPERATOR_TOKEN)).unwrap();
    assert!(!full.hashes_only);
    let rows: Vec<verifier_lib::audit::LogRow<'_>> = full
        .rows
        .iter()
        .map(|(index, leaf, stored)| verifier_lib::audit::LogRow {
            index: *index,
            leaf,
            stored_hash: *stored,
        })
        .collect();
    verifier_lib::audit::verify_log_rows(&rows, &full.checkpoints, vkey.trim(), None).unwrap();
}
