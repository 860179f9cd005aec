//! Cost of appraising a quote WITH logs versus quote-only, on a real swtpm
//! quote: a ~100-event real event log (tpm2-tools `event-bootorder`, 104
//! events) extended into the PCRs and 10,000 synthetic `ima-ng` entries
//! extended into PCR 10. Reports medians and ratios to the quote-only
//! baseline measured in the same run:
//! - quote only (`appraise_tpm`),
//! - quote + event log + all 10k IMA entries (first appraisal of a boot),
//! - quote + event log + 100 new IMA entries after a 10k cursor (steady state).
//!
//! A measurement, not a test: `cargo run --release -p attester --example log_appraisal_cost`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use swtpm_tests::Swtpm;
use verifier_lib::appraisal::{
    appraise_tpm, appraise_tpm_with_logs, ImaState, LogEvidenceRef, TpmEvidenceRef, Verdict,
};
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{event_type, EventLog};
use verifier_lib::ima::{replay_from, ImaCursor, ImaLog};
use verifier_lib::policy::learn::{learn, LearnInput};
use verifier_lib::policy::Policy;
use verifier_lib::tpm::PcrValues;
use writ_attester::tpm::{AkAlg, Tpm};

const RUNS: usize = 30;
const IMA_ENTRIES: usize = 10_000;
const NEW_ENTRIES: usize = 100;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn ima_ng_line(digest: &[u8], path: &str) -> String {
    let d = [b"sha256:\0".as_slice(), digest].concat();
    let n = [path.as_bytes(), b"\0"].concat();
    let mut data = Vec::new();
    for f in [&d, &n] {
        data.extend_from_slice(&u32::try_from(f.len()).unwrap().to_le_bytes());
        data.extend_from_slice(f);
    }
    format!(
        "10 {} ima-ng sha256:{} {path}\n",
        hex::encode(HashAlg::Sha1.digest(&data)),
        hex::encode(digest)
    )
}

fn main() {
    std::env::set_var("TSS2_LOG", "all+none");
    let log_bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../verifier-lib/tests/vectors/eventlog/tpm2-tools/event-bootorder/binary_bios_measurements"
    ))
    .unwrap();
    let log = EventLog::parse(&log_bytes).unwrap();
    let replayed = log.replay();
    let bank = &replayed.banks[&HashAlg::Sha256];
    let zero = vec![0u8; 32];
    let aggregate = HashAlg::Sha256
        .digest_parts((0u8..=9).map(|i| bank.get(&i).map_or(zero.as_slice(), Vec::as_slice)));
    let mut ima = ima_ng_line(&aggregate, "boot_aggregate");
    for i in 1..IMA_ENTRIES {
        let digest = HashAlg::Sha256.digest(&u64::try_from(i).unwrap().to_le_bytes());
        ima.push_str(&ima_ng_line(
            &digest,
            &format!("/usr/lib/writ-bench/file-{i}.so"),
        ));
    }
    let entries = ImaLog::parse_ascii(&ima).unwrap().entries;

    let policy_text = learn(&LearnInput {
        id: "bench",
        group: "bench",
        hosts: vec![],
        eventlog: Some(&log_bytes),
        ima: Some(ima.as_bytes()),
    })
    .unwrap();
    let policy = Policy::parse_toml(&policy_text).unwrap();
    let selection = policy.groups[0].pcr_selection();
    // The quote-only baseline uses the same PCR selection without log rules.
    let quote_only_policy = Policy::parse_toml(
        &policy_text
            .lines()
            .take_while(|l| !l.starts_with("[groups.boot]") && !l.starts_with("[groups.ima]"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();

    let swtpm = Swtpm::start().unwrap();
    let mut tpm = Tpm::open(&swtpm.tcti()).unwrap();
    for e in &log.events {
        if e.event_type != event_type::EV_NO_ACTION {
            tpm.pcr_extend(
                u8::try_from(e.pcr).unwrap(),
                HashAlg::Sha256,
                e.digest(HashAlg::Sha256).unwrap(),
            )
            .unwrap();
        }
    }
    let extend_started = Instant::now();
    for e in &entries {
        tpm.pcr_extend(10, HashAlg::Sha256, &e.extend_value(HashAlg::Sha256))
            .unwrap();
    }
    eprintln!(
        "extended {IMA_ENTRIES} IMA entries into swtpm PCR 10 in {:?}",
        extend_started.elapsed()
    );
    let ek_alg = tpm.detect_ek_alg().unwrap();
    let ek = tpm.create_ek(ek_alg).unwrap();
    let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
    let nonce = [7u8; 32];
    let q = tpm.quote(&ek, &ak, &nonce, &selection).unwrap();
    let pcrs = PcrValues(q.pcrs);
    let ev = TpmEvidenceRef {
        attest: &q.attest,
        signature: &q.signature,
        pcrs: &pcrs,
    };
    let full = LogEvidenceRef {
        eventlog: Some(&log_bytes),
        ima: Some(ima.as_bytes()),
        ima_offset: 0,
    };
    // Steady state: the broker already accepted all but the last 100.
    let known = IMA_ENTRIES - NEW_ENTRIES;
    let tail_start = ima
        .match_indices('\n')
        .nth(known - 1)
        .map(|(i, _)| i + 1)
        .unwrap();
    let tail = LogEvidenceRef {
        eventlog: Some(&log_bytes),
        ima: Some(&ima.as_bytes()[tail_start..]),
        ima_offset: u64::try_from(known).unwrap(),
    };
    let attest = verifier_lib::tpm::Attest::parse(&q.attest).unwrap();
    let stored = ImaState {
        cursor: replay_from(&ImaCursor::new(), &entries[..known]),
        reset_count: attest.clock_info.reset_count,
        restart_count: attest.clock_info.restart_count,
    };

    let (mut base, mut first, mut steady) = (vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let t = Instant::now();
        let a = appraise_tpm(&quote_only_policy, "h", &ak.public_tpm2b, ev, &nonce);
        base.push(t.elapsed());
        assert_eq!(a.verdict, Verdict::Affirming, "{:?}", a.failures);

        let t = Instant::now();
        let a = appraise_tpm_with_logs(&policy, "h", &ak.public_tpm2b, ev, &nonce, full, None);
        first.push(t.elapsed());
        assert_eq!(a.tpm.verdict, Verdict::Affirming, "{:?}", a.tpm.failures);
        assert_eq!(a.ima_new_entries, IMA_ENTRIES as u64);

        let t = Instant::now();
        let a = appraise_tpm_with_logs(
            &policy,
            "h",
            &ak.public_tpm2b,
            ev,
            &nonce,
            tail,
            Some(&stored),
        );
        steady.push(t.elapsed());
        assert_eq!(a.tpm.verdict, Verdict::Affirming, "{:?}", a.tpm.failures);
        assert_eq!(a.ima_new_entries, NEW_ENTRIES as u64);
    }
    tpm.flush_ek(ek).unwrap();
    let (b, f, s) = (median(base), median(first), median(steady));
    println!(
        "runs: {RUNS} (median); event log: {} events; IMA: {IMA_ENTRIES} entries",
        log.events.len()
    );
    println!("quote only:                             {b:>10.2?}  1.0x");
    println!(
        "quote + event log + {IMA_ENTRIES} IMA entries (first): {f:>10.2?}  {:.1}x",
        f.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "quote + event log + {NEW_ENTRIES} new IMA entries (cursor): {s:>10.2?}  {:.1}x",
        s.as_secs_f64() / b.as_secs_f64()
    );
}
