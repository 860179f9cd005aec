//! IMA list parsing, template-hash checks, PCR 10 replay and incremental
//! appraisal against every list in `tests/vectors/ima/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{EventLog, PcrBanks};
use verifier_lib::ima::{
    appraise_ascii, check_boot_aggregate, check_pcr10, replay_from, BootAggregateRange, ImaCursor,
    ImaEntry, ImaError, ImaLog,
};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p
            .file_name()
            .is_some_and(|n| n == "ascii_runtime_measurements")
        {
            out.push(p);
        }
    }
}

/// Every ASCII list: (name relative to vectors/, text).
fn lists() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    collect(&vectors().join("ima"), &mut paths);
    paths.sort();
    assert!(paths.len() >= 7, "{paths:?}");
    paths
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(vectors()).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The collector's SHA-1 PCR 10 regression value for a list, from PROVENANCE-ima.md.
fn stated_pcr10(name: &str) -> Option<Vec<u8>> {
    let prov = std::fs::read_to_string(vectors().join("PROVENANCE-ima.md")).unwrap();
    let pos = prov.find(&format!("`{name}`"))?;
    let entry = &prov[pos..prov[pos..].find("\n\n").map_or(prov.len(), |e| pos + e)];
    // The first "= <40 hex digits>" after a mention of PCR10.
    let at = entry.find("PCR10")?;
    entry[at..]
        .match_indices("= ")
        .find_map(|(i, _)| hex::decode(entry.get(at + i + 2..at + i + 42)?).ok())
}

fn quoted(cursor: &ImaCursor) -> PcrBanks {
    let mut q = PcrBanks::new();
    q.insert(
        HashAlg::Sha1,
        BTreeMap::from([(10u8, cursor.pcr10_sha1.clone())]),
    );
    q.insert(
        HashAlg::Sha256,
        BTreeMap::from([(10u8, cursor.pcr10_sha256.clone())]),
    );
    q
}

#[test]
fn every_list_parses_and_template_hashes_check() {
    for (name, text) in lists() {
        let log = ImaLog::parse_ascii(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(log.entries.len(), text.lines().count(), "{name}");
        for (i, e) in log.entries.iter().enumerate() {
            assert_eq!(e.index, i as u64);
            assert_eq!(e.pcr, 10);
            if e.violation {
                assert!(e.template_hash.iter().all(|&b| b == 0));
            } else {
                assert_eq!(
                    HashAlg::Sha1.digest(&e.template_data),
                    e.template_hash,
                    "{name}"
                );
            }
            let (alg, digest) = e.file_digest.as_ref().unwrap();
            if let Some(h) = HashAlg::from_name(alg) {
                assert_eq!(digest.len(), h.output_len(), "{name}");
            }
            // ima-buf: the file digest is the hash of the buffer.
            if let (Some(buf), Some(h)) = (&e.buf, HashAlg::from_name(alg)) {
                assert_eq!(&h.digest(buf), digest, "{name}: entry {i}");
            }
        }
    }
}

#[test]
fn sha1_pcr10_replay_matches_stated_regression_values() {
    let mut checked = 0;
    for (name, text) in lists() {
        let Some(want) = stated_pcr10(&name) else {
            continue;
        };
        let log = ImaLog::parse_ascii(&text).unwrap();
        let c = replay_from(&ImaCursor::new(), &log.entries);
        assert_eq!(hex::encode(&c.pcr10_sha1), hex::encode(want), "{name}");
        assert_eq!(c.entries, log.entries.len() as u64);
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
}

#[test]
fn templates_and_fields_decode() {
    let all: Vec<ImaEntry> = lists()
        .iter()
        .flat_map(|(_, t)| ImaLog::parse_ascii(t).unwrap().entries)
        .collect();
    let sigs = all.iter().filter(|e| e.signature.is_some()).count();
    let bufs = all.iter().filter(|e| e.buf.is_some()).count();
    let unsigned_sig = all
        .iter()
        .filter(|e| e.template_name == "ima-sig" && e.signature.is_none())
        .count();
    assert!(
        sigs >= 2 && bufs >= 6 && unsigned_sig >= 3,
        "{sigs} {bufs} {unsigned_sig}"
    );
    // IMA signatures (xattr type 3, v2 header) start 03 02.
    for e in all.iter().filter_map(|e| e.signature.as_ref()) {
        assert_eq!(e.get(..2), Some([3u8, 2].as_slice()));
    }
    let violations = all.iter().filter(|e| e.violation).count();
    assert!(violations >= 3, "{violations}");
}

#[test]
fn binary_form_round_trips() {
    for (name, text) in lists() {
        let log = ImaLog::parse_ascii(&text).unwrap();
        let bin = log.to_binary();
        let back = ImaLog::parse_binary(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, log, "{name}");
        // Truncation anywhere is a typed error, never a panic or a shorter list.
        for cut in (0..bin.len()).step_by((bin.len() / 300).max(1)) {
            let r = ImaLog::parse_binary(&bin[..cut]);
            let complete = cut == 0 || r.as_ref().is_ok_and(|l| l.to_binary().len() == cut);
            assert!(r.is_err() || complete, "{name}: cut {cut}");
        }
    }
}

#[test]
fn ima_template_d_n_layout() {
    // The original `ima` template: SHA-1 over the 20-byte digest and the
    // name NUL-padded to IMA_EVENT_NAME_LEN_MAX + 1 = 256 bytes, no lengths.
    let digest = HashAlg::Sha1.digest(b"file contents");
    let mut data = digest.clone();
    data.extend_from_slice(b"/usr/bin/true");
    data.resize(276, 0);
    let th = HashAlg::Sha1.digest(&data);
    let line = format!(
        "10 {} ima {} /usr/bin/true\n",
        hex::encode(&th),
        hex::encode(&digest)
    );
    let log = ImaLog::parse_ascii(&line).unwrap();
    let e = &log.entries[0];
    assert_eq!(e.file_digest, Some(("sha1".to_string(), digest.clone())));
    assert_eq!(e.template_data, data);
    // Binary `ima` layout: no template-data length, `d` without length, `n` as u32 len + name.
    let bin = log.to_binary();
    assert_eq!(bin.len(), 4 + 20 + 4 + 3 + 20 + 4 + 13);
    assert_eq!(ImaLog::parse_binary(&bin).unwrap(), log);
}

#[test]
fn tampered_lines_are_rejected_with_entry_and_line() {
    for (name, text) in lists() {
        let lines: Vec<&str> = text.lines().collect();
        let log = ImaLog::parse_ascii(&text).unwrap();
        // Change one hex digit of the file digest of the last non-violation entry.
        let Some(k) = log.entries.iter().rposition(|e| !e.violation) else {
            continue;
        };
        let mut changed: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        let l = &mut changed[k];
        let colon = l.find(':').unwrap_or_else(|| l.find(" ima ").unwrap() + 4);
        let pos = colon + 1;
        let c = if &l[pos..pos + 1] == "0" { "1" } else { "0" };
        l.replace_range(pos..pos + 1, c);
        let tampered = changed.join("\n");
        match ImaLog::parse_ascii(&tampered) {
            Err(ImaError::TemplateHashMismatch { entry, line, .. }) => {
                assert_eq!((entry, line), (k as u64, Some(k + 1)), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Resume-from-cursor equals full replay for every split point.
#[test]
fn incremental_replay_equals_full_replay_at_every_split() {
    for (name, text) in lists() {
        let log = ImaLog::parse_ascii(&text).unwrap();
        let full = replay_from(&ImaCursor::new(), &log.entries);
        let bin = log.to_binary();
        let n = log.entries.len();
        for k in 0..=n {
            let first = replay_from(&ImaCursor::new(), &log.entries[..k]);
            assert_eq!(first.entries, k as u64);
            assert_eq!(replay_from(&first, &log.entries[k..]), full, "{name} k={k}");
            // Parsing only the tail after the cursor gives the same entries.
            if k % 7 == 0 || n < 50 {
                let tail = ImaLog::parse_ascii_after(&text, &first).unwrap();
                assert_eq!(tail.entries, log.entries[k..], "{name} k={k}");
                let tail_bin = ImaLog::parse_binary_after(&bin, &first).unwrap();
                assert_eq!(tail_bin.entries, log.entries[k..], "{name} k={k}");
                let (next, new) = appraise_ascii(&text, &first, &quoted(&full)).unwrap();
                assert_eq!((next, new.len()), (full.clone(), n - k));
            }
        }
        // A cursor beyond the list is a typed error.
        let beyond = ImaCursor {
            entries: n as u64 + 1,
            ..full.clone()
        };
        assert!(matches!(
            ImaLog::parse_ascii_after(&text, &beyond),
            Err(ImaError::ShorterThanCursor { .. })
        ));
        // The cursor survives a JSON round trip (the broker stores it).
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<ImaCursor>(&json).unwrap(), full);
    }
}

/// A prefix rewritten consistently (template hash recomputed, so it parses)
/// is caught by the final PCR 10 — both on full replay and when the cursor
/// came from the tampered prefix.
#[test]
fn tampered_prefix_is_caught_by_pcr10() {
    for (name, text) in lists() {
        let log = ImaLog::parse_ascii(&text).unwrap();
        let honest = replay_from(&ImaCursor::new(), &log.entries);
        let Some(j) = log
            .entries
            .iter()
            .position(|e| !e.violation && e.template_name == "ima-ng")
        else {
            continue;
        };
        // Rebuild entry j for a different path with a correct template hash.
        let mut forged = log.entries.clone();
        let e = &mut forged[j];
        let (alg, digest) = e.file_digest.clone().unwrap();
        let line = {
            let mut d = alg.as_bytes().to_vec();
            d.extend_from_slice(b":\0");
            d.extend_from_slice(&digest);
            let mut n = b"/tmp/evil".to_vec();
            n.push(0);
            let mut data = Vec::new();
            for f in [&d, &n] {
                data.extend_from_slice(&(f.len() as u32).to_le_bytes());
                data.extend_from_slice(f);
            }
            format!(
                "10 {} ima-ng {alg}:{} /tmp/evil",
                hex::encode(HashAlg::Sha1.digest(&data)),
                hex::encode(&digest)
            )
        };
        *e = ImaLog::parse_ascii(&line).unwrap().entries.remove(0);
        e.index = j as u64;
        // Full replay of the forged list mismatches the quote.
        let forged_full = replay_from(&ImaCursor::new(), &forged);
        assert!(matches!(
            check_pcr10(&forged_full, &quoted(&honest)),
            Err(ImaError::PcrMismatch { .. })
        ));
        // Cursor accepted from the forged prefix, then the honest suffix.
        let cursor = replay_from(&ImaCursor::new(), &forged[..=j]);
        let resumed = replay_from(&cursor, &log.entries[j + 1..]);
        assert_ne!(resumed.pcr10_sha1, honest.pcr10_sha1, "{name}");
        assert_ne!(resumed.pcr10_sha256, honest.pcr10_sha256, "{name}");
        assert!(matches!(
            appraise_ascii(&text, &cursor, &quoted(&honest)),
            Err(ImaError::PcrMismatch {
                bank: HashAlg::Sha1,
                ..
            })
        ));
    }
}

#[test]
fn check_pcr10_requires_a_quoted_bank() {
    let c = ImaCursor::new();
    assert_eq!(
        check_pcr10(&c, &PcrBanks::new()),
        Err(ImaError::Pcr10NotQuoted)
    );
    let mut q = quoted(&c);
    assert_eq!(check_pcr10(&c, &q), Ok(()));
    q.get_mut(&HashAlg::Sha256).unwrap().insert(10, vec![1; 32]);
    assert!(matches!(
        check_pcr10(&c, &q),
        Err(ImaError::PcrMismatch {
            bank: HashAlg::Sha256,
            ..
        })
    ));
}

/// Violations extend all-ff in both banks.
#[test]
fn violations_extend_all_ff() {
    for (_, text) in lists() {
        let log = ImaLog::parse_ascii(&text).unwrap();
        for e in log.entries.iter().filter(|e| e.violation) {
            let one = replay_from(&ImaCursor::new(), std::slice::from_ref(e));
            assert_eq!(one.pcr10_sha1, HashAlg::Sha1.extend(&[0; 20], &[0xff; 20]));
            assert_eq!(
                one.pcr10_sha256,
                HashAlg::Sha256.extend(&[0; 32], &[0xff; 32])
            );
        }
    }
}

fn boot_aggregate_entry(alg: HashAlg, digest: Vec<u8>) -> ImaEntry {
    let mut d = alg.name().as_bytes().to_vec();
    d.extend_from_slice(b":\0");
    d.extend_from_slice(&digest);
    let mut data = Vec::new();
    for f in [d.as_slice(), b"boot_aggregate\0".as_slice()] {
        data.extend_from_slice(&(f.len() as u32).to_le_bytes());
        data.extend_from_slice(f);
    }
    let line = format!(
        "10 {} ima-ng {}:{} boot_aggregate",
        hex::encode(HashAlg::Sha1.digest(&data)),
        alg.name(),
        hex::encode(&digest)
    );
    ImaLog::parse_ascii(&line).unwrap().entries.remove(0)
}

/// boot_aggregate against PCRs replayed from each real event log: SHA-1
/// over PCR 0-7, other banks over PCR 0-9 (or 0-7 on older kernels).
#[test]
fn boot_aggregate_links_to_event_log_replay() {
    let dir = vectors().join("eventlog/go-tpm-tools");
    let mut checked = 0;
    for d in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(d.unwrap().path().join("binary_bios_measurements")).unwrap();
        let pcrs = EventLog::parse(&bytes).unwrap().replay().banks;
        for (&alg, bank) in &pcrs {
            let zero = vec![0u8; alg.output_len()];
            let agg = |upto: u8| {
                let mut all = Vec::new();
                for i in 0..=upto {
                    all.extend_from_slice(bank.get(&i).unwrap_or(&zero));
                }
                alg.digest(&all)
            };
            let e7 = boot_aggregate_entry(alg, agg(7));
            assert_eq!(
                check_boot_aggregate(&e7, &pcrs),
                Ok(BootAggregateRange::Pcr0To7)
            );
            let e9 = boot_aggregate_entry(alg, agg(9));
            let r9 = check_boot_aggregate(&e9, &pcrs);
            if alg == HashAlg::Sha1 {
                assert!(matches!(r9, Err(ImaError::BootAggregateMismatch { .. })));
            } else {
                assert_eq!(r9, Ok(BootAggregateRange::Pcr0To9));
            }
            checked += 1;
        }
        // The IMA vectors come from other machines: their boot_aggregate
        // entries must not match these logs.
        for (_, text) in lists() {
            let log = ImaLog::parse_ascii(&text).unwrap();
            for e in log.entries.iter().filter(|e| e.path == "boot_aggregate") {
                assert!(check_boot_aggregate(e, &pcrs).is_err());
            }
            if let Some(e) = log.entries.iter().find(|e| e.path != "boot_aggregate") {
                assert!(matches!(
                    check_boot_aggregate(e, &pcrs),
                    Err(ImaError::NotBootAggregate { .. })
                ));
            }
        }
    }
    assert!(checked >= 10);
}
