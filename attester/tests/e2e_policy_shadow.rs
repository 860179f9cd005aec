//! Shadow evaluation on swtpm (issue #17 step 2): two hosts enrolled and
//! trusted; a candidate policy that forbids a PCR value one of them has is
//! reported for exactly that host, changes nothing (the host stays trusted
//! and affirming), and once activated fails that host on its next
//! appraisal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::{fresh_pcrs, Host};
use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker, OPERATOR_TOKEN};
use verifier_lib::crypto::HashAlg;
use writ_attester::commands;
use writ_attester::tpm::AkAlg;
use writ_broker::cli::policy::{run_on_store, PolicyCommand, StoreArgs};
use writ_broker::decision::shadow::ShadowReport;

fn report(host: &Host) -> ShadowReport {
    host.client()
        .with_operator_token(OPERATOR_TOKEN)
        .get("/v1/policy/shadow/report")
        .unwrap()
}

fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn shadow_candidate_is_reported_for_exactly_the_host_it_would_fail() {
    let (pcrs, roots) = fresh_pcrs();
    // Host B will extend PCR 16 once; the active policy allows both values,
    // the candidate only the fresh one.
    let fresh16 = pcrs[&16].clone();
    let extended16 = HashAlg::Sha256.digest_parts([fresh16.as_slice(), &[0x5a; 32]]);
    let candidate = policy_toml("candidate", &pcrs, &[]);
    let narrow = format!("16 = [\"{}\"]", hex::encode(&fresh16));
    let wide = format!(
        "16 = [\"{}\", \"{}\"]",
        hex::encode(&fresh16),
        hex::encode(&extended16)
    );
    assert!(candidate.contains(&narrow));
    let active = policy_toml("active", &pcrs, &[]).replace(&narrow, &wide);
    let broker = TestBroker::start_on_configured(
        swtpm_tests::broker::Backend::Sqlite,
        BrokerOptions {
            policy: active,
            ek_roots_pem: roots,
            bundled_manufacturers: false,
        },
        |c| c.policy.poll_interval_ms = 200,
    )
    .unwrap();
    let a = Host::new(&broker.url());
    let b = Host::distinct(&broker.url());
    b.extend_pcr16();
    assert_eq!(b.pcrs()[&16], extended16);
    for h in [&a, &b] {
        commands::enroll(&h.settings, AkAlg::EccP256).unwrap();
        let r = commands::attest(&h.settings).unwrap();
        assert_eq!(
            (r.verdict.as_str(), r.host_status.as_str()),
            ("affirming", "trusted"),
            "{r:?}"
        );
    }
    let (id_a, id_b) = (a.state().host_id, b.state().host_id);
    let store = StoreArgs {
        db: Some(broker.storage_url()),
        config: None,
        signing_keys: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let candidate_path = dir.path().join("candidate.toml");
    std::fs::write(&candidate_path, &candidate).unwrap();
    let cli = |cmd: PolicyCommand| broker.block_on(run_on_store(cmd)).unwrap();
    cli(PolicyCommand::Shadow {
        file: Some(candidate_path.clone()),
        clear: false,
        signature: None,
        store: store.clone(),
    });
    // Real appraisals of both hosts, until the broker has loaded the
    // candidate and recorded the difference.
    until("the shadow difference of host B", || {
        for h in [&a, &b] {
            let r = commands::attest(&h.settings).unwrap();
            // The shadow verdict changes nothing.
            assert_eq!(
                (r.verdict.as_str(), r.host_status.as_str()),
                ("affirming", "trusted"),
                "{r:?}"
            );
        }
        !report(&a).hosts.is_empty()
    });
    // Once more each, so host A had its chance to differ under the shadow.
    for h in [&a, &b] {
        commands::attest(&h.settings).unwrap();
    }
    let r = report(&a);
    assert_eq!(r.shadow_policy_id.as_deref(), Some("candidate"));
    assert_eq!((r.would_fail, r.would_pass), (1, 0), "{r:?}");
    assert_eq!(r.hosts.len(), 1, "{r:?}");
    let hb = &r.hosts[0];
    assert_eq!(hb.host_id, id_b);
    assert_eq!(
        (hb.active_verdict.as_str(), hb.shadow_verdict.as_str()),
        ("affirming", "contraindicated")
    );
    assert!(hb.active_rules.is_empty(), "{hb:?}");
    assert_eq!(
        hb.shadow_rules,
        vec!["pcr_not_allowed".to_owned()],
        "{hb:?}"
    );
    assert_eq!(hb.shadow_failures[0]["pcr"], 16, "{hb:?}");
    // The CLI's report reads the same rows.
    let from_store = broker
        .block_on(writ_broker::decision::shadow::report(&broker.store, 1000))
        .unwrap();
    assert_eq!(from_store, r);
    let table = writ_broker::cli::policy::table(&from_store);
    assert!(table.contains(&id_b) && !table.contains(&id_a), "{table}");
    // Nothing but the record changed: both hosts trusted, no failure.
    for id in [&id_a, &id_b] {
        let h = broker.block_on(broker.store.host(id)).unwrap().unwrap();
        assert_eq!(h.status.as_str(), "trusted");
    }

    // Promote the candidate: the shadow clears, and host B fails its next
    // appraisal while host A stays trusted.
    cli(PolicyCommand::Activate {
        file: candidate_path,
        signature: None,
        store,
    });
    until("host B to fail under the promoted candidate", || {
        let r = commands::attest(&b.settings).unwrap();
        if r.verdict == "affirming" {
            return false;
        }
        assert_eq!(r.host_status, "failed", "{r:?}");
        true
    });
    let r = commands::attest(&a.settings).unwrap();
    assert_eq!(
        (r.verdict.as_str(), r.host_status.as_str()),
        ("affirming", "trusted"),
        "{r:?}"
    );
    assert_eq!(report(&a).shadow_hash, None);
}
