//! Event-log parsing, replay and claims against every real log in
//! `tests/vectors/eventlog/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{
    compare, compare_with_quirks, event_type, BootState, EventLog, EventLogError, Format,
    MeasuredStringSource, PcrBanks, Quirk,
};

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/eventlog")
}

/// Every log directory: (dir, raw log bytes).
fn logs() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for source in std::fs::read_dir(vector_dir()).unwrap() {
        for dir in std::fs::read_dir(source.unwrap().path()).unwrap() {
            let dir = dir.unwrap().path();
            let bin = dir.join("binary_bios_measurements");
            if bin.exists() {
                out.push((dir, std::fs::read(bin).unwrap()));
                continue;
            }
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "b64") {
                    let text: String = std::fs::read_to_string(&f)
                        .unwrap()
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap();
                    out.push((dir.clone(), bytes));
                }
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 11,
        "expected all vector logs, found {}",
        out.len()
    );
    out
}

fn expected_pcrs(dir: &Path) -> Option<PcrBanks> {
    let text = std::fs::read_to_string(dir.join("expected_pcrs.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut banks = PcrBanks::new();
    for (bank, pcrs) in v["pcrs"].as_object().unwrap() {
        let alg = HashAlg::from_name(bank).unwrap();
        let mut m = BTreeMap::new();
        for (i, hexval) in pcrs.as_object().unwrap() {
            m.insert(
                i.parse::<u8>().unwrap(),
                hex::decode(hexval.as_str().unwrap()).unwrap(),
            );
        }
        banks.insert(alg, m);
    }
    Some(banks)
}

fn name(dir: &Path) -> String {
    dir.strip_prefix(vector_dir())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn every_log_with_expected_pcrs_replays_exactly() {
    let mut checked = 0;
    for (dir, bytes) in logs() {
        let Some(expected) = expected_pcrs(&dir) else {
            continue;
        };
        let log = EventLog::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", name(&dir)));
        let replayed = log.replay();
        for (bank, pcrs) in &expected {
            for (pcr, want) in pcrs {
                assert_eq!(
                    replayed.value(*bank, *pcr).map(hex::encode),
                    Some(hex::encode(want)),
                    "{}: {bank} PCR {pcr}",
                    name(&dir)
                );
                checked += 1;
            }
        }
        assert_eq!(compare(&replayed, &expected), Ok(()), "{}", name(&dir));
        // JSON shape: {"sha256": {"0": "hex"}}.
        let json = serde_json::to_value(&replayed).unwrap();
        for (bank, pcrs) in &expected {
            for (pcr, want) in pcrs {
                assert_eq!(json[bank.name()][pcr.to_string()], hex::encode(want));
            }
        }
    }
    assert!(checked > 100, "only {checked} PCR values checked");
}

#[test]
fn logs_without_expected_pcrs_parse_cleanly() {
    let mut n = 0;
    for (dir, bytes) in logs() {
        let log = EventLog::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", name(&dir)));
        assert!(log.events.len() > 10, "{}", name(&dir));
        // Events are contiguous and indexed in order.
        for (i, e) in log.events.iter().enumerate() {
            assert_eq!(e.index, i);
        }
        assert_eq!(log.events.first().map(|e| e.offset), Some(0));
        if expected_pcrs(&dir).is_none() {
            n += 1;
            assert!(!log.replay().banks.is_empty(), "{}", name(&dir));
        }
    }
    assert!(n >= 3);
}

#[test]
fn format_is_detected_from_the_first_event() {
    for (dir, bytes) in logs() {
        let log = EventLog::parse(&bytes).unwrap();
        let header_sig = bytes.get(32..47) == Some(b"Spec ID Event03".as_slice());
        match log.format {
            Format::CryptoAgile => {
                assert!(header_sig, "{}", name(&dir));
                assert!(log.spec_id.is_some());
            }
            Format::LegacySha1 => {
                assert!(!header_sig, "{}", name(&dir));
                assert_eq!(log.banks(), vec![HashAlg::Sha1]);
            }
            _ => unreachable!(),
        }
    }
}

/// Minimal reader for the per-event part of `tpm2_eventlog` raw YAML.
#[derive(Debug, Default)]
struct YamlEvent {
    num: usize,
    pcr: u32,
    event_type: String,
    digests: Vec<(String, String)>,
    size: usize,
}

fn yaml_events(text: &str) -> Vec<YamlEvent> {
    let mut out: Vec<YamlEvent> = Vec::new();
    let mut alg: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("pcrs:") {
            break;
        }
        let t = line.trim_start();
        if let Some(n) = line.strip_prefix("- EventNum: ") {
            out.push(YamlEvent {
                num: n.parse().unwrap(),
                ..Default::default()
            });
        } else if let Some(ev) = out.last_mut() {
            if let Some(v) = line.strip_prefix("  PCRIndex: ") {
                ev.pcr = v.parse().unwrap();
            } else if let Some(v) = line.strip_prefix("  EventType: ") {
                ev.event_type = v.to_string();
            } else if let Some(v) = line.strip_prefix("  EventSize: ") {
                ev.size = v.parse().unwrap();
            } else if let Some(v) = t.strip_prefix("- AlgorithmId: ") {
                alg = Some(v.to_string());
            } else if let Some(v) = t.strip_prefix("Digest: ") {
                let a = alg.take().unwrap_or_else(|| "sha1".to_string());
                ev.digests.push((a, v.trim_matches('"').to_string()));
            }
        }
    }
    out
}

#[test]
fn per_event_decoding_matches_tpm2_eventlog_yaml() {
    let mut compared = 0;
    for (dir, bytes) in logs() {
        let Ok(yaml) = std::fs::read_to_string(dir.join("tpm2_eventlog.raw.yaml")) else {
            continue;
        };
        let want = yaml_events(&yaml);
        let log = EventLog::parse(&bytes).unwrap();
        assert_eq!(log.events.len(), want.len(), "{}: event count", name(&dir));
        for (got, want) in log.events.iter().zip(&want) {
            assert_eq!(got.index, want.num);
            assert_eq!(got.pcr, want.pcr, "{}: event {}", name(&dir), want.num);
            assert_eq!(
                event_type::name(got.event_type),
                Some(want.event_type.as_str()),
                "{}: event {}",
                name(&dir),
                want.num
            );
            assert_eq!(got.data.len(), want.size);
            let got_digests: Vec<(String, String)> = got
                .digests
                .iter()
                .map(|(a, d)| (a.name().to_string(), hex::encode(d)))
                .collect();
            assert_eq!(
                got_digests,
                want.digests,
                "{}: event {}",
                name(&dir),
                want.num
            );
            compared += 1;
        }
    }
    assert!(compared > 100, "{compared}");
}

/// The ExitBootServices quirk (go-attestation eventlog_workarounds.go): for
/// every log whose PCR 5 ends with ExitBootServices actions, drop them from
/// the log bytes; the plain comparison then fails on PCR 5 only and the quirk
/// makes it pass, naming the appended actions.
#[test]
fn quirk_exit_boot_services_not_logged() {
    let mut exercised = 0;
    for (dir, bytes) in logs() {
        let Some(expected) = expected_pcrs(&dir) else {
            continue;
        };
        if !expected.values().any(|b| b.contains_key(&5)) {
            continue;
        }
        let log = EventLog::parse(&bytes).unwrap();
        let pcr5: Vec<_> = log.events.iter().filter(|e| e.pcr == 5).collect();
        let [.., inv, ret] = pcr5.as_slice() else {
            continue;
        };
        if inv.data != b"Exit Boot Services Invocation"
            || !ret.data.starts_with(b"Exit Boot Services Returned with")
        {
            continue;
        }
        // Splice the two events out of the raw bytes.
        let mut cut = Vec::new();
        for e in &log.events {
            let end = log
                .events
                .get(e.index + 1)
                .map_or(bytes.len(), |n| n.offset);
            if e.index != inv.index && e.index != ret.index {
                cut.extend_from_slice(&bytes[e.offset..end]);
            }
        }
        let shorter = EventLog::parse(&cut).unwrap();
        let mismatches = compare(&shorter.replay(), &expected).unwrap_err();
        assert!(mismatches.iter().all(|m| m.pcr == 5), "{}", name(&dir));
        let outcome = compare_with_quirks(&shorter, &expected).unwrap();
        let Some(Quirk::ExitBootServicesNotLogged { actions }) = outcome.applied else {
            panic!("{}: no quirk applied", name(&dir));
        };
        assert_eq!(
            actions.last().map(|a| a.as_bytes()),
            Some(ret.data.as_slice())
        );
        // The unmodified log needs no quirk.
        assert_eq!(compare_with_quirks(&log, &expected).unwrap().applied, None);
        exercised += 1;
    }
    assert!(exercised >= 3, "{exercised}");
}

/// A mismatch outside PCR 5 is never papered over by a quirk.
#[test]
fn quirks_do_not_hide_other_mismatches() {
    for (dir, bytes) in logs() {
        let Some(mut expected) = expected_pcrs(&dir) else {
            continue;
        };
        let log = EventLog::parse(&bytes).unwrap();
        let (bank, pcrs) = expected.iter_mut().next().unwrap();
        let bank = *bank;
        let v = pcrs.get_mut(&0).unwrap();
        v[0] ^= 1;
        let m = compare_with_quirks(&log, &expected).unwrap_err();
        assert_eq!(m.len(), 1, "{}", name(&dir));
        assert_eq!((m[0].bank, m[0].pcr), (bank, 0));
        assert_eq!(m[0].replayed.as_deref(), log.replay().value(bank, 0));
    }
}

/// tpm2_eventlog extends EV_NO_ACTION events (peers.md); Writ must not: a
/// change to any EV_NO_ACTION digest leaves the replay unchanged.
#[test]
fn no_action_events_are_never_extended() {
    for (dir, bytes) in logs() {
        let log = EventLog::parse(&bytes).unwrap();
        let before = log.replay();
        let mut changed = log.clone();
        let mut touched = 0;
        for e in &mut changed.events {
            if e.event_type == event_type::EV_NO_ACTION {
                for (_, d) in &mut e.digests {
                    d.iter_mut().for_each(|b| *b ^= 0x5a);
                    touched += 1;
                }
            }
        }
        // The crypto-agile header is itself an EV_NO_ACTION event.
        if log.format == Format::CryptoAgile {
            assert!(touched >= 1, "{}", name(&dir));
        }
        assert_eq!(changed.replay(), before, "{}", name(&dir));
    }
}

/// The StartupLocality event sets PCR 0's reset value: a log with it replays
/// differently from the same log with the locality event's byte changed.
#[test]
fn startup_locality_sets_pcr0_initial_value() {
    let mut seen = 0;
    for (dir, bytes) in logs() {
        let log = EventLog::parse(&bytes).unwrap();
        let Some(ev) = log.events.iter().find(|e| {
            e.event_type == event_type::EV_NO_ACTION && e.data.starts_with(b"StartupLocality\0")
        }) else {
            continue;
        };
        seen += 1;
        let replayed = log.replay();
        assert_eq!(replayed.startup_locality, ev.data.last().copied());
        let mut other = log.clone();
        if let Some(b) = other.events[ev.index].data.last_mut() {
            *b ^= 1;
        }
        let r2 = other.replay();
        for bank in log.banks() {
            assert_ne!(r2.value(bank, 0), replayed.value(bank, 0), "{}", name(&dir));
            assert_eq!(r2.value(bank, 1), replayed.value(bank, 1));
        }
    }
    assert!(seen >= 1);
}

/// Secure Boot state as stated in PROVENANCE-eventlog.md ("Secure Boot
/// enabled/disabled" in each log's "What" line) matches the claim.
#[test]
fn boot_state_secure_boot_matches_provenance() {
    let prov = std::fs::read_to_string(vector_dir().join("../PROVENANCE-eventlog.md")).unwrap();
    let mut checked = 0;
    for (dir, bytes) in logs() {
        let key = format!("`eventlog/{}/", name(&dir));
        let Some(pos) = prov.find(&key) else { continue };
        let entry = &prov[pos..prov[pos..].find("\n\n").map_or(prov.len(), |e| pos + e)];
        let stated = if entry.contains("Secure Boot enabled") {
            Some(true)
        } else if entry.contains("Secure Boot disabled") {
            Some(false)
        } else {
            None
        };
        let Some(stated) = stated else { continue };
        let state = BootState::from_log(&EventLog::parse(&bytes).unwrap());
        assert_eq!(state.secure_boot, Some(stated), "{}", name(&dir));
        checked += 1;
    }
    assert!(checked >= 4, "{checked}");
}

/// General properties of the claims on every log.
#[test]
fn boot_state_claims_are_consistent() {
    for (dir, bytes) in logs() {
        let log = EventLog::parse(&bytes).unwrap();
        let s = BootState::from_log(&log);
        let n = name(&dir);
        // Every separator in these logs is a verified, non-error separator.
        assert!(!s.separators.is_empty(), "{n}");
        assert!(
            s.separators.iter().all(|x| x.digest_verified && !x.error),
            "{n}"
        );
        assert!(!s.has_error_separator());
        // The PCR 7 variables the PC Client profile requires.
        let names: Vec<&str> = s
            .secure_boot_variables
            .iter()
            .filter(|v| v.pcr == 7)
            .map(|v| v.name.as_str())
            .collect();
        for required in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
            assert!(names.contains(&required), "{n}: {required} missing");
        }
        assert!(
            s.secure_boot_variables.iter().all(|v| v.digest_verified),
            "{n}: unverified variable"
        );
        for v in &s.secure_boot_variables {
            assert_eq!(v.data_sha256.len(), 32);
            assert_eq!(v.vendor_guid.len(), 36);
        }
        // EFI action strings hash to their digests.
        for a in s
            .measured_strings
            .iter()
            .filter(|m| m.source == MeasuredStringSource::EfiAction)
        {
            assert!(a.digest_verified, "{n}: {:?}", a.text);
        }
        // GRUB command lines verify.
        for c in s.kernel_cmdlines() {
            assert!(c.digest_verified, "{n}: {}", c.text);
            assert!(
                c.text.contains("vmlinuz") || c.text.contains("root="),
                "{n}"
            );
        }
        // Boot applications carry a digest and a rendered path.
        for app in &s.boot_applications {
            assert!(app.digest.is_some());
            assert!(app.device_path.is_some(), "{n}: event {}", app.event_index);
        }
        serde_json::to_string(&s).unwrap();
    }
}

#[test]
fn boot_state_reads_grub_and_systemd_boot() {
    let mut grub = 0;
    let mut sdboot = 0;
    for (dir, bytes) in logs() {
        let s = BootState::from_log(&EventLog::parse(&bytes).unwrap());
        if s.kernel_cmdlines().next().is_some() {
            grub += 1;
            // GRUB measured the kernel it booted into PCR 9 (older RHEL GRUB
            // names it "grub_linuxefi Kernel" instead of the path).
            assert!(
                s.pcr9_files
                    .iter()
                    .any(|f| f.path.contains("vmlinuz") || f.path.contains("Kernel")),
                "{}",
                name(&dir)
            );
        }
        if s.measured_strings
            .iter()
            .any(|m| m.source == MeasuredStringSource::SystemdBootLoadOptions)
        {
            sdboot += 1;
            for m in s
                .measured_strings
                .iter()
                .filter(|m| m.source == MeasuredStringSource::SystemdBootLoadOptions)
            {
                assert!(m.text.contains("console="), "{}: {}", name(&dir), m.text);
            }
            // The Linux EFI stub tags the initrd in PCR 9.
            assert!(s
                .tagged_events
                .iter()
                .any(|t| t.description == "Linux initrd"));
        }
    }
    assert!(grub >= 2 && sdboot >= 1, "grub {grub} sd-boot {sdboot}");
}

#[test]
fn trailing_zero_padding_and_garbage_are_rejected() {
    for (dir, bytes) in logs() {
        let log = EventLog::parse(&bytes).unwrap();
        let n = log.events.len();
        for tail in [vec![0u8; 1], vec![0u8; 64], vec![0xffu8; 3]] {
            let mut b = bytes.clone();
            b.extend(&tail);
            match EventLog::parse(&b) {
                Err(EventLogError::TrailingGarbage {
                    event_index,
                    offset,
                    count,
                }) => {
                    assert_eq!((event_index, offset, count), (n, bytes.len(), tail.len()));
                }
                Err(EventLogError::Truncated {
                    event_index,
                    offset,
                    ..
                }) => {
                    assert_eq!(event_index, n, "{}", name(&dir));
                    assert!(offset >= bytes.len());
                }
                other => panic!("{}: {other:?}", name(&dir)),
            }
        }
    }
}
