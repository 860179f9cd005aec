//! Event-log replay and IMA appraisal throughput, as ratios to raw SHA-256
//! over the same bytes measured in the same run, plus the wall time of
//! `tpm2_eventlog` (one process per log) over the same logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{EventLog, PcrBanks};
use verifier_lib::ima::{appraise_ascii, replay_from, ImaCursor, ImaLog};

const LOG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/eventlog");
/// 104 events, SHA-1 + SHA-256 banks.
const LOG_100: &[u8] =
    include_bytes!("../tests/vectors/eventlog/tpm2-tools/event-bootorder/binary_bios_measurements");
const IMA_SRC: &str =
    include_str!("../tests/vectors/ima/rust-keylime/ima-ng-sha1/ascii_runtime_measurements");

/// A 10 000-entry ima-ng list built from the real entries, each with a
/// distinct path and a correct template hash.
fn ima_10k() -> String {
    let src = ImaLog::parse_ascii(IMA_SRC).unwrap().entries;
    let mut out = String::new();
    for i in 0..10_000 {
        let e = &src[i % src.len()];
        let (alg, digest) = e.file_digest.clone().unwrap();
        let path = format!("{}.{i}", e.path);
        let mut d = alg.as_bytes().to_vec();
        d.extend_from_slice(b":\0");
        d.extend_from_slice(&digest);
        let mut n = path.as_bytes().to_vec();
        n.push(0);
        let mut data = Vec::new();
        for f in [&d, &n] {
            data.extend_from_slice(&(f.len() as u32).to_le_bytes());
            data.extend_from_slice(f);
        }
        out.push_str(&format!(
            "10 {} ima-ng {alg}:{} {path}\n",
            hex::encode(HashAlg::Sha1.digest(&data)),
            hex::encode(&digest)
        ));
    }
    out
}

/// Mean time per call over at least `min` wall time.
fn time<F: FnMut()>(min: Duration, mut f: F) -> Duration {
    let mut n = 0u32;
    let start = Instant::now();
    while start.elapsed() < min || n < 3 {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn all_logs() -> Vec<(String, std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for src in std::fs::read_dir(LOG_DIR).unwrap() {
        for d in std::fs::read_dir(src.unwrap().path()).unwrap() {
            let p = d.unwrap().path().join("binary_bios_measurements");
            if let Ok(b) = std::fs::read(&p) {
                let name = p
                    .parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((name, p, b));
            }
        }
    }
    out.sort();
    out
}

fn print_rates() {
    let min = Duration::from_millis(700);
    // Event log: parse + replay vs SHA-256 over the same bytes.
    let n_events = EventLog::parse(LOG_100).unwrap().events.len();
    let t_replay = time(min, || {
        black_box(EventLog::parse(black_box(LOG_100)).unwrap().replay());
    });
    let t_sha = time(min, || {
        black_box(HashAlg::Sha256.digest(black_box(LOG_100)));
    });
    println!(
        "eventlog parse+replay ({n_events} events, {} B): {:.1} us/log = {:.0} logs/s, {:.2} M events/s; raw SHA-256 of the same bytes {:.1} us; ratio {:.1}x",
        LOG_100.len(),
        t_replay.as_secs_f64() * 1e6,
        1.0 / t_replay.as_secs_f64(),
        n_events as f64 / t_replay.as_secs_f64() / 1e6,
        t_sha.as_secs_f64() * 1e6,
        t_replay.as_secs_f64() / t_sha.as_secs_f64()
    );

    // IMA: 10k entries appraised from scratch.
    let text = ima_10k();
    let full = replay_from(
        &ImaCursor::new(),
        &ImaLog::parse_ascii(&text).unwrap().entries,
    );
    let quoted: PcrBanks = BTreeMap::from([(
        HashAlg::Sha1,
        BTreeMap::from([(10u8, full.pcr10_sha1.clone())]),
    )]);
    let t_ima = time(min, || {
        black_box(appraise_ascii(black_box(&text), &ImaCursor::new(), &quoted).unwrap());
    });
    let t_sha_ima = time(min, || {
        black_box(HashAlg::Sha256.digest(black_box(text.as_bytes())));
    });
    println!(
        "ima appraise (parse + template-hash check + sha1/sha256 PCR10 replay), 10000 entries, {} B: {:.2} ms = {:.0} entries/s; raw SHA-256 of the same bytes {:.3} ms; ratio {:.1}x",
        text.len(),
        t_ima.as_secs_f64() * 1e3,
        10_000.0 / t_ima.as_secs_f64(),
        t_sha_ima.as_secs_f64() * 1e3,
        t_ima.as_secs_f64() / t_sha_ima.as_secs_f64()
    );

    // tpm2_eventlog, one process per log, over the same logs.
    let mut ours_total = Duration::ZERO;
    let mut tool_total = Duration::ZERO;
    let mut ran = 0;
    for (name, path, bytes) in all_logs() {
        let ours = time(Duration::from_millis(100), || {
            black_box(EventLog::parse(&bytes).unwrap().replay());
        });
        let tool = time(Duration::from_millis(300), || {
            let status = std::process::Command::new("tpm2_eventlog")
                .arg(&path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            black_box(status.is_ok());
        });
        println!(
            "  {name}: writ {:.1} us, tpm2_eventlog {:.2} ms ({:.0}x)",
            ours.as_secs_f64() * 1e6,
            tool.as_secs_f64() * 1e3,
            tool.as_secs_f64() / ours.as_secs_f64()
        );
        ours_total += ours;
        tool_total += tool;
        ran += 1;
    }
    if ran > 0 {
        println!(
            "tpm2_eventlog vs writ parse+replay over {ran} logs: {:.2} ms vs {:.1} us per log, ratio {:.0}x",
            tool_total.as_secs_f64() * 1e3 / f64::from(ran),
            ours_total.as_secs_f64() * 1e6 / f64::from(ran),
            tool_total.as_secs_f64() / ours_total.as_secs_f64()
        );
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("eventlog");
    g.throughput(Throughput::Bytes(LOG_100.len() as u64));
    g.bench_function("parse_replay_104_events", |b| {
        b.iter(|| EventLog::parse(black_box(LOG_100)).unwrap().replay())
    });
    g.bench_function("sha256_same_bytes", |b| {
        b.iter(|| HashAlg::Sha256.digest(black_box(LOG_100)))
    });
    g.finish();

    let text = ima_10k();
    let full = replay_from(
        &ImaCursor::new(),
        &ImaLog::parse_ascii(&text).unwrap().entries,
    );
    let quoted: PcrBanks = BTreeMap::from([(
        HashAlg::Sha1,
        BTreeMap::from([(10u8, full.pcr10_sha1.clone())]),
    )]);
    let mut g = c.benchmark_group("ima");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("appraise_10k_entries", |b| {
        b.iter(|| appraise_ascii(black_box(&text), &ImaCursor::new(), &quoted).unwrap())
    });
    g.bench_function("sha256_same_bytes", |b| {
        b.iter(|| HashAlg::Sha256.digest(black_box(text.as_bytes())))
    });
    g.finish();
}

fn main() {
    print_rates();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
