//! Boot and IMA policy over the real vector logs: a policy learned from a
//! log accepts that log, and every deny names the event / entry that broke it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use verifier_lib::appraisal::{appraise_logs, ImaState, LogEvidenceRef};
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{event_type, EventLog};
use verifier_lib::ima::{replay_from, ImaCursor, ImaLog};
use verifier_lib::policy::learn::{learn, LearnInput};
use verifier_lib::policy::{Failure, HostGroup, PcrMap, Policy};

fn vectors(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(kind)
}

/// Every `binary_bios_measurements` in the vectors.
fn eventlogs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for src in std::fs::read_dir(vectors("eventlog")).unwrap() {
        for case in std::fs::read_dir(src.unwrap().path()).unwrap() {
            let p = case.unwrap().path().join("binary_bios_measurements");
            if p.is_file() {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 9,
        "expected the vector logs, found {}",
        out.len()
    );
    out
}

/// Every IMA ASCII list in the vectors.
fn ima_lists() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![vectors("ima")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() == "ascii_runtime_measurements" {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 7);
    out
}

/// What a TPM whose PCRs were extended by exactly this log would quote over
/// `group`'s selection (PCRs the log never touches stay zero, PCR 10 is the
/// IMA replay if given).
fn quoted_for(group: &HostGroup, log: Option<&EventLog>, pcr10: Option<&ImaCursor>) -> PcrMap {
    let bank = group.pcr_bank;
    let replayed = log.map(|l| l.replay());
    let mut out = PcrMap::new();
    for (b, pcrs) in group.pcr_selection() {
        assert_eq!(b, bank);
        for pcr in pcrs {
            let mut v = replayed
                .as_ref()
                .and_then(|r| r.value(bank, pcr))
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| vec![0; bank.output_len()]);
            if let (10, Some(c)) = (pcr, pcr10) {
                v = match bank {
                    HashAlg::Sha1 => c.pcr10_sha1.clone(),
                    _ => c.pcr10_sha256.clone(),
                };
            }
            out.entry(bank).or_default().insert(pcr, v);
        }
    }
    out
}

fn learned(eventlog: Option<&[u8]>, ima: Option<&[u8]>) -> Policy {
    let text = learn(&LearnInput {
        id: "learned",
        group: "golden",
        hosts: vec![],
        eventlog,
        ima,
    })
    .unwrap();
    Policy::parse_toml(&text).unwrap()
}

fn logs<'a>(eventlog: Option<&'a [u8]>, ima: Option<&'a [u8]>, offset: u64) -> LogEvidenceRef<'a> {
    LogEvidenceRef {
        eventlog,
        ima,
        ima_offset: offset,
    }
}

#[test]
fn learned_policy_accepts_its_own_event_log() {
    for (name, bytes) in eventlogs() {
        let policy = learned(Some(&bytes), None);
        let group = &policy.groups[0];
        let log = EventLog::parse(&bytes).unwrap();
        let quoted = quoted_for(group, Some(&log), None);
        let stage = appraise_logs(
            Some(group),
            &quoted,
            (1, 0),
            logs(Some(&bytes), None, 0),
            None,
        );
        assert!(stage.failures.is_empty(), "{name}: {:#?}", stage.failures);
        assert!(stage.boot_state.is_some(), "{name}");
    }
}

#[test]
fn forbidden_kernel_and_boot_app_name_their_events() {
    let mut checked = 0;
    for (name, bytes) in eventlogs() {
        let text = learn(&LearnInput {
            id: "x",
            group: "g",
            hosts: vec![],
            eventlog: Some(&bytes),
            ima: None,
        })
        .unwrap();
        let policy = Policy::parse_toml(&text).unwrap();
        let group = &policy.groups[0];
        let boot = group.boot.as_ref().unwrap();
        let Some(kernel) = boot.kernels.allowed.iter().next().cloned() else {
            continue;
        };
        let app = boot.boot_apps.allowed.iter().next().cloned().unwrap();
        // Same rules plus forbidden lists.
        let doc = text.replacen(
            "[groups.boot.kernels]\n",
            &format!(
                "[groups.boot.kernels]\nforbidden = [\"{}\"]\n",
                hex::encode(&kernel)
            ),
            1,
        );
        let doc = doc.replacen(
            "[groups.boot.boot_apps]\n",
            &format!(
                "[groups.boot.boot_apps]\nforbidden = [\"{}\"]\n",
                hex::encode(&app)
            ),
            1,
        );
        let policy = Policy::parse_toml(&doc).unwrap_or_else(|e| panic!("{name}: {e}\n{doc}"));
        let group = &policy.groups[0];
        let log = EventLog::parse(&bytes).unwrap();
        let quoted = quoted_for(group, Some(&log), None);
        let stage = appraise_logs(
            Some(group),
            &quoted,
            (1, 0),
            logs(Some(&bytes), None, 0),
            None,
        );
        let kinds: Vec<(&str, usize)> = stage
            .failures
            .iter()
            .filter_map(|f| match f {
                Failure::BootDigestForbidden {
                    kind, event_index, ..
                } => Some((kind.as_str(), *event_index)),
                _ => None,
            })
            .collect();
        assert!(
            kinds.iter().any(|(k, _)| *k == "kernel"),
            "{name}: {:?}",
            stage.failures
        );
        assert!(
            kinds.iter().any(|(k, _)| *k == "boot_app"),
            "{name}: {:?}",
            stage.failures
        );
        for (_, idx) in &kinds {
            let e = log.events.iter().find(|e| e.index == *idx).unwrap();
            assert!(
                e.digest(HashAlg::Sha256) == Some(kernel.as_slice())
                    || e.digest(HashAlg::Sha256) == Some(app.as_slice()),
                "{name}: event {idx} is not the forbidden component"
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} logs had a kernel");
}

#[test]
fn altered_event_is_a_replay_mismatch_naming_the_pcr() {
    for (name, bytes) in eventlogs() {
        let policy = learned(Some(&bytes), None);
        let group = &policy.groups[0];
        let log = EventLog::parse(&bytes).unwrap();
        let quoted = quoted_for(group, Some(&log), None);
        // Flip one byte of the first sha256 (or only-bank) digest of a measured event.
        let bank = group.pcr_bank;
        let victim = log
            .events
            .iter()
            .find(|e| e.event_type != event_type::EV_NO_ACTION && e.digest(bank).is_some())
            .unwrap();
        let digest = victim.digest(bank).unwrap().to_vec();
        let at = bytes[victim.offset..]
            .windows(digest.len())
            .position(|w| w == digest.as_slice())
            .unwrap()
            + victim.offset;
        let mut altered = bytes.clone();
        altered[at] ^= 0x01;
        let stage = appraise_logs(
            Some(group),
            &quoted,
            (1, 0),
            logs(Some(&altered), None, 0),
            None,
        );
        assert!(
            stage.failures.iter().any(|f| matches!(
                f,
                Failure::EventLogPcrMismatch { pcr, bank: b, .. }
                    if u32::from(*pcr) == victim.pcr && *b == bank
            )),
            "{name}: {:?}",
            stage.failures
        );
        assert!(stage.boot_state.is_none());
    }
}

#[test]
fn boot_rule_failures_are_all_reported() {
    let (_, bytes) = eventlogs()
        .into_iter()
        .find(|(n, _)| n.contains("keylime/secureboot"))
        .unwrap();
    let text = learn(&LearnInput {
        id: "x",
        group: "g",
        hosts: vec![],
        eventlog: Some(&bytes),
        ima: None,
    })
    .unwrap();
    let doc = text
        .replace("secure_boot = true", "secure_boot = false\ndbx_required = [\"00000000000000000000000000000000000000000000000000000000000000aa\"]")
        .replace("[[groups.boot.cmdlines]]\nexact = ", "[[groups.boot.cmdlines]]\nprefix = \"nomatch\"\n#");
    let policy = Policy::parse_toml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    let group = &policy.groups[0];
    let log = EventLog::parse(&bytes).unwrap();
    let quoted = quoted_for(group, Some(&log), None);
    let stage = appraise_logs(
        Some(group),
        &quoted,
        (1, 0),
        logs(Some(&bytes), None, 0),
        None,
    );
    let f = &stage.failures;
    assert!(
        f.iter().any(|f| matches!(
            f,
            Failure::SecureBootNotAllowed {
                expected: false,
                actual: Some(true),
                event_index: Some(_)
            }
        )),
        "{f:?}"
    );
    assert!(
        f.iter().any(|f| matches!(
            f,
            Failure::DbxEntryMissing {
                event_index: Some(_),
                ..
            }
        )),
        "{f:?}"
    );
    assert!(
        f.iter().any(|f| matches!(
            f,
            Failure::CmdlineNotAllowed {
                event_index: Some(_),
                cmdline: Some(_)
            }
        )),
        "{f:?}"
    );
    // Missing log when the policy requires one.
    let stage = appraise_logs(Some(group), &quoted, (1, 0), logs(None, None, 0), None);
    assert_eq!(
        stage.failures,
        vec![Failure::LogMissing {
            log: "eventlog".into()
        }]
    );
    // A PCR the log extends but the quote does not cover.
    let mut partial = quoted.clone();
    partial.get_mut(&HashAlg::Sha256).unwrap().remove(&4);
    let stage = appraise_logs(
        Some(group),
        &partial,
        (1, 0),
        logs(Some(&bytes), None, 0),
        None,
    );
    assert!(
        stage
            .failures
            .iter()
            .any(|f| matches!(f, Failure::EventLogPcrNotQuoted { pcr: 4, .. })),
        "{:?}",
        stage.failures
    );
}

fn ima_quoted(group: &HostGroup, text: &str) -> (PcrMap, ImaCursor) {
    let list = ImaLog::parse_ascii(text).unwrap();
    let c = replay_from(&ImaCursor::new(), &list.entries);
    (quoted_for(group, None, Some(&c)), c)
}

#[test]
fn learned_ima_allowlist_accepts_and_denylist_denies() {
    for (name, bytes) in ima_lists() {
        let policy = learned(None, Some(&bytes));
        let group = &policy.groups[0];
        assert!(group.pcr_selection()[0].1.contains(&10));
        let text = std::str::from_utf8(&bytes).unwrap();
        let (quoted, cursor) = ima_quoted(group, text);
        let stage = appraise_logs(
            Some(group),
            &quoted,
            (1, 0),
            logs(None, Some(&bytes), 0),
            None,
        );
        assert!(stage.failures.is_empty(), "{name}: {:?}", stage.failures);
        let state = stage.ima_state.unwrap();
        assert_eq!(state.cursor, cursor);

        // Deny the digest of the last non-aggregate entry.
        let list = ImaLog::parse_ascii(text).unwrap();
        let victim = list
            .entries
            .iter()
            .rev()
            .find(|e| e.index > 0 && !e.violation)
            .unwrap();
        let (alg, d) = victim.file_digest.clone().unwrap();
        let doc = learn(&LearnInput {
            id: "x",
            group: "g",
            hosts: vec![],
            eventlog: None,
            ima: Some(&bytes),
        })
        .unwrap()
        .replacen(
            "[groups.ima]\n",
            &format!("[groups.ima]\ndeny = [\"{alg}:{}\"]\n", hex::encode(&d)),
            1,
        );
        let policy = Policy::parse_toml(&doc).unwrap_or_else(|e| panic!("{name}: {e}\n{doc}"));
        let stage = appraise_logs(
            Some(&policy.groups[0]),
            &quoted,
            (1, 0),
            logs(None, Some(&bytes), 0),
            None,
        );
        assert!(
            stage.failures.iter().any(|f| matches!(f, Failure::ImaEntryDenied { entry_index, .. } if *entry_index == victim.index)),
            "{name}: {:?}",
            stage.failures
        );
        assert!(
            stage.ima_state.is_none(),
            "a denied appraisal yields no cursor"
        );
    }
}

#[test]
fn ima_is_incremental_and_reboots_need_new_counters() {
    let (_, bytes) = ima_lists()
        .into_iter()
        .find(|(n, _)| n.contains("rust-keylime"))
        .unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    let first: String = lines[..half].iter().map(|l| format!("{l}\n")).collect();
    let policy = learned(None, Some(&bytes));
    let group = &policy.groups[0];

    // First appraisal over the first half.
    let (q1, _) = ima_quoted(group, &first);
    let s1 = appraise_logs(
        Some(group),
        &q1,
        (5, 2),
        logs(None, Some(first.as_bytes()), 0),
        None,
    );
    assert!(s1.failures.is_empty(), "{:?}", s1.failures);
    let st1: ImaState = s1.ima_state.unwrap();
    assert_eq!(st1.cursor.entries, half as u64);

    // Second: only the tail is sent and parsed.
    let tail: String = lines[half..].iter().map(|l| format!("{l}\n")).collect();
    let (q2, full) = ima_quoted(group, text);
    let s2 = appraise_logs(
        Some(group),
        &q2,
        (5, 2),
        logs(None, Some(tail.as_bytes()), half as u64),
        Some(&st1),
    );
    assert!(s2.failures.is_empty(), "{:?}", s2.failures);
    assert_eq!(s2.ima_new_entries, (lines.len() - half) as u64);
    assert_eq!(s2.ima_state.as_ref().unwrap().cursor, full);

    // Entries appended after the quote are left for next time.
    let s2b = appraise_logs(
        Some(group),
        &q1,
        (5, 2),
        logs(None, Some(text.as_bytes()), 0),
        None,
    );
    assert!(s2b.failures.is_empty(), "{:?}", s2b.failures);
    assert_eq!(s2b.ima_state.unwrap().cursor.entries, half as u64);

    // Same boot, list shrank: failure, not a restart.
    let short: String = lines[..half / 2].iter().map(|l| format!("{l}\n")).collect();
    let (q3, _) = ima_quoted(group, &short);
    let s3 = appraise_logs(
        Some(group),
        &q3,
        (5, 2),
        logs(None, Some(short.as_bytes()), 0),
        Some(&st1),
    );
    assert!(
        matches!(
            s3.failures.as_slice(),
            [Failure::ImaContinuityBroken { .. }]
        ),
        "{:?}",
        s3.failures
    );
    // Same boot, PCR 10 does not continue the cursor (list rewritten).
    let s3b = appraise_logs(
        Some(group),
        &q3,
        (5, 2),
        logs(None, Some(text.as_bytes()), 0),
        Some(&st1),
    );
    assert!(
        matches!(s3b.failures.as_slice(), [Failure::ImaPcrMismatch { entries_from, .. }] if *entries_from == half as u64),
        "{:?}",
        s3b.failures
    );

    // After a TPM reset (resetCount changed) the same short list restarts from 0.
    let s4 = appraise_logs(
        Some(group),
        &q3,
        (6, 0),
        logs(None, Some(short.as_bytes()), 0),
        Some(&st1),
    );
    assert!(s4.failures.is_empty(), "{:?}", s4.failures);
    assert!(s4.ima_restarted);
    assert_eq!(s4.ima_state.unwrap().cursor.entries, (half / 2) as u64);
    // ... but not from a tail.
    let s5 = appraise_logs(
        Some(group),
        &q2,
        (6, 0),
        logs(None, Some(tail.as_bytes()), half as u64),
        Some(&st1),
    );
    assert!(
        matches!(
            s5.failures.as_slice(),
            [Failure::ImaContinuityBroken { .. }]
        ),
        "{:?}",
        s5.failures
    );
}

#[test]
fn boot_aggregate_is_checked_against_the_event_log() {
    // A synthetic ima-ng list whose boot_aggregate is computed from a real
    // event log's PCR 0-9 (sha256), as Linux >= 5.8 does.
    let (_, ev) = eventlogs()
        .into_iter()
        .find(|(n, _)| n.contains("event-bootorder"))
        .unwrap();
    let log = EventLog::parse(&ev).unwrap();
    let replayed = log.replay();
    let bank = &replayed.banks[&HashAlg::Sha256];
    let zero = vec![0u8; 32];
    let agg = HashAlg::Sha256
        .digest_parts((0u8..=9).map(|i| bank.get(&i).map_or(zero.as_slice(), Vec::as_slice)));
    let line = |digest: &[u8], path: &str| {
        let d = [b"sha256:\0".as_slice(), digest].concat();
        let n = [path.as_bytes(), b"\0"].concat();
        let mut data = Vec::new();
        for f in [&d, &n] {
            data.extend_from_slice(&(f.len() as u32).to_le_bytes());
            data.extend_from_slice(f);
        }
        format!(
            "10 {} ima-ng sha256:{} {path}\n",
            hex::encode(HashAlg::Sha1.digest(&data)),
            hex::encode(digest)
        )
    };
    let good = line(&agg, "boot_aggregate") + &line(&[7; 32], "/usr/bin/true");
    let policy = learned(Some(&ev), Some(good.as_bytes()));
    let group = &policy.groups[0];
    assert!(group.ima.as_ref().unwrap().boot_aggregate);
    let list = ImaLog::parse_ascii(&good).unwrap();
    let c = replay_from(&ImaCursor::new(), &list.entries);
    let quoted = quoted_for(group, Some(&log), Some(&c));
    let ok = appraise_logs(
        Some(group),
        &quoted,
        (1, 0),
        logs(Some(&ev), Some(good.as_bytes()), 0),
        None,
    );
    assert!(ok.failures.is_empty(), "{:?}", ok.failures);

    let bad = line(&[1; 32], "boot_aggregate") + &line(&[7; 32], "/usr/bin/true");
    let list = ImaLog::parse_ascii(&bad).unwrap();
    let c = replay_from(&ImaCursor::new(), &list.entries);
    let quoted = quoted_for(group, Some(&log), Some(&c));
    let no = appraise_logs(
        Some(group),
        &quoted,
        (1, 0),
        logs(Some(&ev), Some(bad.as_bytes()), 0),
        None,
    );
    assert!(
        matches!(
            no.failures.as_slice(),
            [Failure::ImaBootAggregateMismatch { entry_index: 0, .. }]
        ),
        "{:?}",
        no.failures
    );
}
