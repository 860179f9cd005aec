//! End to end with REAL event logs and IMA lists on swtpm: the log's events
//! are extended into a fresh swtpm's PCRs, the attester presents the log
//! with a quote, and the broker appraises it under a policy learned from the
//! same log through `POST /v1/policy/learn`.
//!
//! Logs used: every crypto-agile vector log with a sha256 bank whose events
//! only extend PCRs 0–15. Skipped, and why: logs with a StartupLocality 3
//! event (`glinux-alex`: PCR 0 starts at ...03, which swtpm at locality 0
//! cannot reproduce) and the legacy SHA-1-only log (`debian-10`: no sha256
//! bank to extend).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use support::{extend_log, fresh_pcrs, reproducible_logs, vectors, Host};
use swtpm_tests::broker::{BrokerOptions, TestBroker};
use verifier_lib::api::PolicyLearnRequest;
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{event_type, EventLog};
use verifier_lib::ima::ImaLog;
use verifier_lib::policy::public::PublicFailure as Failure;
use verifier_lib::policy::Policy;
use writ_attester::commands;
use writ_attester::logs::LogSources;
use writ_attester::tpm::AkAlg;

/// `POST /v1/policy/learn` on `broker`: the draft TOML.
fn learn(broker: &TestBroker, req: &PolicyLearnRequest) -> String {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/policy/learn", broker.url()))
        .bearer_auth(swtpm_tests::broker::OPERATOR_TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(req).unwrap())
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "learn: {}", resp.status());
    resp.text().unwrap()
}

/// Restart the broker on its state directory (database kept) with `policy`
/// as the active policy; point the host at it.
fn activate(broker: TestBroker, host: &mut Host, policy: &str, roots: &[u8]) -> TestBroker {
    let id = Policy::parse_toml(policy).unwrap().id;
    let dir = broker.stop().unwrap();
    let broker = TestBroker::start_in(
        dir,
        BrokerOptions {
            policy: policy.to_owned(),
            ek_roots_pem: roots.to_vec(),
            bundled_manufacturers: false,
        },
    )
    .unwrap();
    host.settings.broker = broker.url();
    assert_eq!(host.challenge().policy_id, id);
    broker
}

/// A broker for enrolling the host before its policy is learned: the
/// bootstrap policy says explicitly that it constrains nothing.
fn start_broker(roots: Vec<u8>) -> TestBroker {
    TestBroker::start(BrokerOptions {
        policy: "id = \"bootstrap\"\n[[groups]]\nname = \"default\"\nhosts = [\"*\"]\n\
                 dangerous_accept_any_measurements = true\n"
            .to_owned(),
        ek_roots_pem: roots,
        bundled_manufacturers: false,
    })
    .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn real_event_logs_accepted_when_learned_denied_when_forbidden_or_altered() {
    std::env::set_var("TSS2_LOG", "all+none");
    let (_, roots) = fresh_pcrs();
    let mut forbidden_checked = 0;
    for (name, bytes) in reproducible_logs() {
        let broker = start_broker(roots.clone());
        let mut host = Host::new(&broker.url());
        let files = tempfile::tempdir().unwrap();
        let log_path = write(files.path(), "binary_bios_measurements", &bytes);
        host.settings.logs = LogSources {
            eventlog: Some(log_path.clone()),
            ima: None,
        };
        let log = EventLog::parse(&bytes).unwrap();
        extend_log(&host, &log);
        commands::enroll(&host.settings, AkAlg::EccP256).unwrap();

        // Learned from the same log: accepted.
        let draft = learn(
            &broker,
            &PolicyLearnRequest {
                id: Some("learned".into()),
                group: Some("golden".into()),
                hosts: vec![],
                eventlog: Some(bytes.clone()),
                ima: None,
            },
        );
        let broker = activate(broker, &mut host, &draft, &roots);
        let ok = commands::attest(&host.settings).unwrap();
        assert_eq!(ok.verdict, "affirming", "{name}: {:?}", ok.failures);
        assert_eq!(ok.host_status, "trusted");

        // The policy forbids this log's kernel (or, without one, a boot app).
        let policy = Policy::parse_toml(&draft).unwrap();
        let boot = policy.groups[0].boot.as_ref().unwrap();
        let target = boot
            .kernels
            .allowed
            .iter()
            .next()
            .map(|k| ("[groups.boot.kernels]\n", "kernel", k.clone()))
            .or_else(|| {
                boot.boot_apps
                    .allowed
                    .iter()
                    .next()
                    .map(|a| ("[groups.boot.boot_apps]\n", "boot_app", a.clone()))
            });
        let broker = match target {
            None => broker,
            Some((section, kind, digest)) => {
                forbidden_checked += 1;
                let forbidding = draft
                    .replace("id = \"learned\"", "id = \"forbidding\"")
                    .replacen(
                        section,
                        &format!("{section}forbidden = [\"{}\"]\n", hex::encode(&digest)),
                        1,
                    );
                let broker = activate(broker, &mut host, &forbidding, &roots);
                let denied = commands::attest(&host.settings).unwrap();
                assert_eq!(denied.verdict, "contraindicated", "{name}");
                assert_eq!(denied.host_status, "failed");
                let hit = denied.failures.iter().find_map(|f| match f {
                    Failure::BootDigestForbidden {
                        kind: k,
                        event_index,
                        digest: d,
                        ..
                    } if k == kind => Some((*event_index, d.clone())),
                    _ => None,
                });
                let (idx, d) = hit.unwrap_or_else(|| panic!("{name}: {:?}", denied.failures));
                assert_eq!(d, hex::encode(&digest));
                let event = log.events.iter().find(|e| e.index == idx).unwrap();
                assert_eq!(event.digest(HashAlg::Sha256), Some(digest.as_slice()));
                broker
            }
        };

        // Back to the learned policy, but one event of the presented log altered.
        let _broker = activate(
            broker,
            &mut host,
            &draft.replace("id = \"learned\"", "id = \"learned-2\""),
            &roots,
        );
        let victim = log
            .events
            .iter()
            .find(|e| e.event_type != event_type::EV_NO_ACTION && e.pcr == 4)
            .or_else(|| {
                log.events
                    .iter()
                    .find(|e| e.event_type != event_type::EV_NO_ACTION)
            })
            .unwrap();
        let d = victim.digest(HashAlg::Sha256).unwrap();
        let at = victim.offset
            + bytes[victim.offset..]
                .windows(d.len())
                .position(|w| w == d)
                .unwrap();
        let mut altered = bytes.clone();
        altered[at] ^= 0x80;
        std::fs::write(&log_path, &altered).unwrap();
        let tampered = commands::attest(&host.settings).unwrap();
        assert_eq!(tampered.verdict, "contraindicated", "{name}");
        assert!(
            tampered.failures.iter().any(|f| matches!(
                f,
                Failure::EventLogPcrMismatch { pcr, bank: HashAlg::Sha256, .. }
                    if u32::from(*pcr) == victim.pcr
            )),
            "{name}: {:?}",
            tampered.failures
        );
        // The genuine log is accepted again.
        std::fs::write(&log_path, &bytes).unwrap();
        let again = commands::attest(&host.settings).unwrap();
        assert_eq!(again.verdict, "affirming", "{name}: {:?}", again.failures);

        // A policy that needs the log denies a host that sends none.
        host.settings.logs = LogSources::none();
        let missing = commands::attest(&host.settings).unwrap();
        assert!(
            missing.failures.contains(&Failure::LogMissing {
                log: "eventlog".into()
            }),
            "{name}: {:?}",
            missing.failures
        );
    }
    // Every log with a kernel or boot application was denied for it.
    assert!(forbidden_checked >= 6, "{forbidden_checked}");
}

#[test]
fn real_ima_list_is_appraised_incrementally() {
    std::env::set_var("TSS2_LOG", "all+none");
    let (_, roots) = fresh_pcrs();
    let list_bytes =
        std::fs::read(vectors("ima").join("rust-keylime/ima-ng-sha1/ascii_runtime_measurements"))
            .unwrap();
    let text = String::from_utf8(list_bytes.clone()).unwrap();
    let list = ImaLog::parse_ascii(&text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;

    let broker = start_broker(roots.clone());
    let mut host = Host::new(&broker.url());
    let files = tempfile::tempdir().unwrap();
    let first: String = lines[..half].iter().map(|l| format!("{l}\n")).collect();
    let ima_path = write(files.path(), "ascii_runtime_measurements", first.as_bytes());
    host.settings.logs = LogSources {
        eventlog: None,
        ima: Some(ima_path.clone()),
    };
    let extend = |host: &Host, from: usize, to: usize| {
        let mut tpm = host.tpm();
        for e in &list.entries[from..to] {
            tpm.pcr_extend(10, HashAlg::Sha256, &e.extend_value(HashAlg::Sha256))
                .unwrap();
        }
    };
    extend(&host, 0, half);
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();

    let draft = learn(
        &broker,
        &PolicyLearnRequest {
            id: Some("ima-learned".into()),
            group: None,
            hosts: vec![],
            eventlog: None,
            ima: Some(list_bytes.clone()),
        },
    );
    let broker = activate(broker, &mut host, &draft, &roots);
    let host_id = host.state().host_id;
    assert_eq!(host.challenge().ima_entries_known, None);

    let a1 = commands::attest(&host.settings).unwrap();
    assert_eq!(a1.verdict, "affirming", "{:?}", a1.failures);
    let c1 = broker
        .block_on(broker.store.ima_cursor(&host_id))
        .unwrap()
        .unwrap();
    assert_eq!(c1.state.cursor.entries, half as u64);

    // The host measures more files: append the rest and extend PCR 10.
    std::fs::write(&ima_path, &list_bytes).unwrap();
    extend(&host, half, lines.len());
    let ch = host.challenge();
    assert_eq!(ch.ima_entries_known, Some(half as u64));
    // What the attester sends for this challenge: only the new lines.
    let probe = host.quote(&ch, &ch.nonce, None);
    let (tail, offset) = writ_attester::logs::ima_tail(list_bytes.clone(), &ch, &probe.attest);
    assert_eq!(offset, half as u64);
    assert_eq!(
        String::from_utf8(tail).unwrap().lines().count(),
        lines.len() - half
    );
    let a2 = commands::attest(&host.settings).unwrap();
    assert_eq!(a2.verdict, "affirming", "{:?}", a2.failures);
    let c2 = broker
        .block_on(broker.store.ima_cursor(&host_id))
        .unwrap()
        .unwrap();
    assert_eq!(c2.state.cursor.entries, lines.len() as u64);
    assert!(c2.updated_at >= c1.updated_at);

    // Deny one appended entry's digest: denied, naming that entry; the
    // stored cursor does not move.
    let victim = list.entries[half..]
        .iter()
        .find(|e| !e.violation && e.file_digest.is_some())
        .unwrap();
    let (alg, d) = victim.file_digest.clone().unwrap();
    let denying = draft
        .replace("id = \"ima-learned\"", "id = \"ima-deny\"")
        .replacen(
            "[groups.ima]\n",
            &format!("[groups.ima]\ndeny = [\"{alg}:{}\"]\n", hex::encode(&d)),
            1,
        );
    let broker = activate(broker, &mut host, &denying, &roots);
    let a3 = commands::attest(&host.settings).unwrap();
    assert_eq!(a3.verdict, "contraindicated");
    assert!(
        a3.failures.iter().any(|f| matches!(
            f,
            Failure::ImaEntryDenied { entry_index, .. } if *entry_index == victim.index
        )),
        "{:?}",
        a3.failures
    );
    let c3 = broker
        .block_on(broker.store.ima_cursor(&host_id))
        .unwrap()
        .unwrap();
    assert_eq!(c3, c2);
}
