//! Truncation and byte-flip sweeps over every vector log with stated PCRs:
//! never a panic; truncations are typed errors or provably shorter logs;
//! flips of any measured byte (a digest or PCR index of an extended event)
//! never replay to the stated PCRs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{compare, event_type, EventLog, EventLogError, PcrBanks};

fn logs_with_expected() -> Vec<(PathBuf, Vec<u8>, PcrBanks)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/eventlog");
    let mut out = Vec::new();
    for src in std::fs::read_dir(root).unwrap() {
        for d in std::fs::read_dir(src.unwrap().path()).unwrap() {
            let d = d.unwrap().path();
            let Ok(text) = std::fs::read_to_string(d.join("expected_pcrs.json")) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut banks = PcrBanks::new();
            for (bank, pcrs) in v["pcrs"].as_object().unwrap() {
                let m: BTreeMap<u8, Vec<u8>> = pcrs
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, h)| {
                        (
                            k.parse().unwrap(),
                            hex::decode(h.as_str().unwrap()).unwrap(),
                        )
                    })
                    .collect();
                banks.insert(HashAlg::from_name(bank).unwrap(), m);
            }
            let bytes = std::fs::read(d.join("binary_bios_measurements")).unwrap();
            out.push((d, bytes, banks));
        }
    }
    assert!(out.len() >= 8);
    out
}

fn full_match(bytes: &[u8], expected: &PcrBanks) -> bool {
    match EventLog::parse(bytes) {
        Ok(log) => {
            let r = log.replay();
            compare(&r, expected).is_ok()
                && expected
                    .iter()
                    .all(|(b, pcrs)| pcrs.keys().all(|p| r.value(*b, *p).is_some()))
        }
        Err(_) => false,
    }
}

/// Positions of bytes whose change must alter an expected PCR: digest bytes
/// in an expected bank and PCR-index bytes, of events that extend an
/// expected PCR.
fn measured_positions(log: &EventLog, bytes: &[u8], expected: &PcrBanks) -> Vec<usize> {
    let mut pos = Vec::new();
    for (i, e) in log.events.iter().enumerate() {
        if e.event_type == event_type::EV_NO_ACTION {
            continue;
        }
        let pcr = u8::try_from(e.pcr).unwrap();
        if !expected.values().any(|b| b.contains_key(&pcr)) {
            continue;
        }
        pos.extend(e.offset..e.offset + 4);
        let end = log.events.get(i + 1).map_or(bytes.len(), |n| n.offset);
        for (alg, d) in &e.digests {
            if !expected.get(alg).is_some_and(|b| b.contains_key(&pcr)) {
                continue;
            }
            // Locate this digest inside the event's bytes.
            let ev = &bytes[e.offset..end];
            let at = ev.windows(d.len()).position(|w| w == d.as_slice()).unwrap();
            pos.extend(e.offset + at..e.offset + at + d.len());
        }
    }
    pos
}

#[test]
fn truncation_sweep() {
    for (dir, bytes, expected) in logs_with_expected() {
        let log = EventLog::parse(&bytes).unwrap();
        let boundaries: Vec<usize> = log.events.iter().map(|e| e.offset).collect();
        let step = (bytes.len() / 500).max(1);
        let cuts = (0..bytes.len())
            .step_by(step)
            .chain(boundaries.iter().copied());
        for cut in cuts {
            match EventLog::parse(&bytes[..cut]) {
                Err(EventLogError::Truncated {
                    event_index,
                    offset,
                    ..
                }) => {
                    assert!(offset <= cut && event_index < log.events.len());
                }
                Err(EventLogError::Empty) => assert_eq!(cut, 0),
                // A cut leaving only zero bytes after an event start.
                Err(EventLogError::TrailingGarbage { offset, count, .. }) => {
                    assert_eq!(offset + count, cut);
                    assert!(bytes[offset..cut].iter().all(|&b| b == 0));
                }
                Err(e) => panic!("{}: cut {cut}: {e}", dir.display()),
                Ok(short) => {
                    // Only event boundaries give a valid (shorter) log; it may
                    // fully match only if every dropped event leaves the
                    // expected PCRs alone.
                    assert!(boundaries.contains(&cut), "{}: cut {cut}", dir.display());
                    let dropped = &log.events[short.events.len()..];
                    let touches = dropped.iter().any(|e| {
                        e.event_type != event_type::EV_NO_ACTION
                            && expected.values().any(|b| b.contains_key(&(e.pcr as u8)))
                    });
                    if touches {
                        assert!(
                            !full_match(&bytes[..cut], &expected),
                            "{} cut {cut}",
                            dir.display()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn byte_flip_sweep() {
    for (dir, bytes, expected) in logs_with_expected() {
        assert!(full_match(&bytes, &expected));
        let log = EventLog::parse(&bytes).unwrap();
        let measured = measured_positions(&log, &bytes, &expected);
        assert!(!measured.is_empty());
        // Every measured byte (sampled to ~600), flipped, breaks the match.
        let step = (measured.len() / 600).max(1);
        for &p in measured.iter().step_by(step) {
            let mut b = bytes.clone();
            b[p] ^= 0x01;
            assert!(!full_match(&b, &expected), "{}: flip at {p}", dir.display());
        }
        // Any other byte: no panic; parse or replay may still succeed (event
        // data and types are not covered by the PCRs).
        let step = (bytes.len() / 400).max(1);
        for p in (0..bytes.len()).step_by(step) {
            let mut b = bytes.clone();
            b[p] ^= 0xff;
            if let Ok(l) = EventLog::parse(&b) {
                let _ = compare(&l.replay(), &expected);
                let _ = verifier_lib::eventlog::BootState::from_log(&l);
            }
        }
    }
}
