//! What a group's Rego module costs per appraisal next to its TOML twin,
//! as a ratio measured in the same run: the PCR rule alone, and the boot
//! rules over a real 104-event log (replay and the log stage included on
//! both sides, so the ratio is the whole log appraisal's).
//!
//! `cargo bench -p verifier-lib --bench rego`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;
use verifier_lib::appraisal::boot_rules;
use verifier_lib::appraisal::{appraise_logs, LogEvidenceRef};
use verifier_lib::eventlog::{BootState, EventLog};
use verifier_lib::policy::{HostGroup, PcrMap, Policy};

/// 104 events, SHA-1 + SHA-256 banks.
const LOG: &[u8] =
    include_bytes!("../tests/vectors/eventlog/tpm2-tools/event-bootorder/binary_bios_measurements");

/// Mean time per call over at least `min` of wall time.
fn time<F: FnMut()>(min: Duration, mut f: F) -> Duration {
    let mut n = 0u32;
    let start = Instant::now();
    while start.elapsed() < min || n < 3 {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn quoted(group: &HostGroup, log: &EventLog) -> PcrMap {
    let replayed = log.replay();
    let mut out = PcrMap::new();
    for (bank, pcrs) in group.pcr_selection() {
        for pcr in pcrs {
            let v = replayed
                .value(bank, pcr)
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| vec![0; bank.output_len()]);
            out.entry(bank).or_default().insert(pcr, v);
        }
    }
    out
}

fn report(what: &str, toml: Duration, rego: Duration) {
    println!(
        "{what}: TOML {:.1} us, Rego {:.1} us per appraisal, Rego/TOML = {:.2}",
        toml.as_secs_f64() * 1e6,
        rego.as_secs_f64() * 1e6,
        rego.as_secs_f64() / toml.as_secs_f64()
    );
}

fn main() {
    let min = Duration::from_secs(2);
    let log = EventLog::parse(LOG).unwrap();
    let state = BootState::from_log(&log);
    let replay = log.replay();
    let pcr0 = hex::encode(
        replay
            .value(verifier_lib::crypto::HashAlg::Sha256, 0)
            .unwrap(),
    );
    let pcr7 = hex::encode(
        replay
            .value(verifier_lib::crypto::HashAlg::Sha256, 7)
            .unwrap(),
    );

    // 1. PCR rule: the TOML check of two PCRs vs the module's evaluation.
    let toml = Policy::parse_toml(&format!(
        "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n[groups.pcrs]\n0 = [\"{pcr0}\"]\n7 = [\"{pcr7}\"]\n"
    ))
    .unwrap();
    let rego = Policy::parse_toml(&format!(
        "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n[groups.rego]\nquote_pcrs = [0, 7]\nsource = '''\npackage writ.pcrs\nallow if {{\n  input.tpm.pcrs.sha256[\"0\"] == \"{pcr0}\"\n  input.tpm.pcrs.sha256[\"7\"] == \"{pcr7}\"\n}}\n'''\n"
    ))
    .unwrap();
    let (tg, rg) = (&toml.groups[0], &rego.groups[0]);
    let q = quoted(tg, &log);
    assert!(tg.appraise_pcrs(&q).is_empty());
    let pcrs: serde_json::Map<String, serde_json::Value> = q
        [&verifier_lib::crypto::HashAlg::Sha256]
        .iter()
        .map(|(p, v)| (p.to_string(), json!(hex::encode(v))))
        .collect();
    let input = json!({"tee": "tpm", "tpm": {"pcrs": {"sha256": pcrs}}});
    let rules = rg.rego.as_ref().unwrap();
    assert!(rules.appraise("g", input.clone()).is_empty());
    let t = time(min, || {
        black_box(tg.appraise_pcrs(black_box(&q)));
    });
    let r = time(min, || {
        black_box(rules.appraise("g", black_box(input.clone())));
    });
    report("PCR 0 and 7", t, r);

    // 2. Boot rules over the real log: secure boot, kernels, command lines.
    let kernels: Vec<String> = boot_rules::kernels(&state)
        .iter()
        .filter_map(|k| k.digest.as_ref().map(|d| hex::encode(&d.value)))
        .collect();
    let toml = Policy::parse_toml(&format!(
        "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n[groups.boot]\nkernels.allowed = {}\nboot_apps.forbidden = [\"{}\"]\n",
        serde_json::to_string(&kernels).unwrap(),
        "ab".repeat(32)
    ))
    .unwrap();
    let rego = Policy::parse_toml(&format!(
        "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n[groups.rego]\nsource = '''\npackage writ.boot\nkernels := {}\nallow := true\ndeny contains k.name if {{\n  some k in input.boot.kernels\n  not k.digest in kernels\n}}\ndeny contains a.name if {{\n  some a in input.boot.boot_apps\n  a.digest == \"{}\"\n}}\n'''\n",
        serde_json::to_string(&kernels).unwrap(),
        "ab".repeat(32)
    ))
    .unwrap();
    let (tg, rg) = (&toml.groups[0], &rego.groups[0]);
    let q = quoted(tg, &log);
    let logs = LogEvidenceRef {
        eventlog: Some(LOG),
        ima: None,
        ima_offset: 0,
    };
    let rules = rg.rego.as_ref().unwrap();
    let toml_stage = || appraise_logs(Some(tg), &q, (1, 0), logs, None);
    let rego_stage = || {
        let s = appraise_logs(Some(rg), &q, (1, 0), logs, None);
        let input = json!({"tee": "tpm", "boot": s.boot_input.clone().unwrap()});
        (s, rules.appraise("g", input))
    };
    assert!(toml_stage().failures.is_empty());
    let (s, f) = rego_stage();
    assert!(s.failures.is_empty() && f.is_empty(), "{f:?}");
    let t = time(min, || {
        black_box(toml_stage());
    });
    let r = time(min, || {
        black_box(rego_stage());
    });
    report("boot rules, 104-event log", t, r);
}
