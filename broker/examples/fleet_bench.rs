//! Several brokers, measured (issue #13 step 7; a benchmark, not a test):
//! SEV-SNP appraisals/s and latency of
//!
//! * (a) one broker on SQLite (a file in a temp dir, default settings),
//! * (b) one broker on a throw-away PostgreSQL 15,
//! * (c) three brokers on one PostgreSQL database (one fleet: shared
//!   token key, one audit log, `docs/operations.md`), clients spread round
//!   robin over them,
//!
//! each as a ratio to (a) measured in the same run, with what the database
//! costs per decision, and (d) the time a revocation made through one
//! broker takes to reach the status stream of the two others.
//!
//! Every broker is the real in-process server (the production accept loop,
//! its real store and audit log) on a loopback port. The guests are
//! simulated SEV-SNP guests on distinct chips (each its own VCEK under a
//! test ARK/ASK, trusted through `trust.dangerous_snp_test_roots`), so an
//! appraisal is real: chain and CRL check, report signature, policy, token
//! mint, and one write transaction with its audit leaf. C clients (each a
//! kept-alive HTTP client on its own 127.0.0.x source address, so the
//! default per-source rate limits stay on) loop challenge → signed report
//! → `/v1/snp/tokens`; a warm-up is excluded.
//!
//! The throw-away PostgreSQL is made as durable as the broker's SQLite
//! (WAL, synchronous=FULL): `fsync`, `synchronous_commit` and
//! `full_page_writes` on (the test harness turns them off); `--pg-no-fsync`
//! keeps the harness's settings.
//!
//! `cargo run --release -p broker --example fleet_bench -- [--seconds N]
//! [--warmup N] [--clients C] [--guests G] [--pg-no-fsync]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../verifier-lib/tests/snp_support/mod.rs"]
mod snp_support;

#[path = "fleet_bench_support/db_cost.rs"]
mod db_cost;
#[path = "fleet_bench_support/guests.rs"]
mod guests;
#[path = "fleet_bench_support/load.rs"]
mod load;
#[path = "fleet_bench_support/revocation.rs"]
mod revocation;

use std::path::Path;
use std::sync::Arc;

use swtpm_tests::broker::{Backend, BrokerOptions, TestBroker, OPERATOR_TOKEN};
use writ_broker::config::{Config, LimitsConfig, SnpTestRoot};

use db_cost::{DbCost, DbProbe};
use guests::Fleet;
use load::LoadStats;

/// Revocations timed in (d).
const REVOCATIONS: usize = 10;

struct Args {
    seconds: f64,
    warmup: f64,
    clients: usize,
    guests: usize,
    pg_fsync: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10.0,
        warmup: 2.0,
        clients: 16,
        guests: 64,
        pg_fsync: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => a.seconds = value().parse().unwrap(),
            "--warmup" => a.warmup = value().parse().unwrap(),
            "--clients" => a.clients = value().parse().unwrap(),
            "--guests" => a.guests = value().parse().unwrap(),
            "--pg-no-fsync" => a.pg_fsync = false,
            other => panic!(
                "unknown argument {other}; usage: [--seconds N] [--warmup N] [--clients C] \
                 [--guests G] [--pg-no-fsync]"
            ),
        }
    }
    assert!(
        (1..=240).contains(&a.clients),
        "--clients: 1..=240 (one 127.0.0.x source each)"
    );
    assert!(a.guests >= 1, "--guests: at least 1");
    a
}

/// Everything a broker of the bench needs besides its store.
struct Setup {
    fleet: Arc<Fleet>,
    kds_url: String,
    ark_path: std::path::PathBuf,
}

impl Setup {
    fn opts(&self) -> BrokerOptions {
        BrokerOptions {
            policy: self.fleet.policy(),
            ek_roots_pem: Vec::new(),
            bundled_manufacturers: false,
        }
    }

    fn tweak<'a>(&'a self, name: &'a str) -> impl FnOnce(&mut Config) + 'a {
        move |cfg| {
            cfg.broker.name = name.to_owned();
            // One log for the fleet: the same origin on every broker.
            cfg.audit.origin = "writ-fleet-bench".into();
            cfg.trust.dangerous_snp_test_roots = vec![SnpTestRoot {
                product: "Genoa".into(),
                file: self.ark_path.clone(),
            }];
            cfg.snp.kds_url = self.kds_url.clone();
            let cache = cfg
                .keys
                .dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("kds-cache");
            self.fleet.seed_cache(&cache);
            cfg.snp.cache_dir = cache;
        }
    }
}

/// One scenario's figures.
struct Outcome {
    name: &'static str,
    stats: LoadStats,
    seconds: f64,
    cost: DbCost,
    propagation: Option<revocation::Propagation>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.stats.tokens as f64 / self.seconds
    }
}

fn start_brokers(setup: &Setup, backend: Backend, count: usize) -> Vec<TestBroker> {
    let names = ["broker-1", "broker-2", "broker-3", "broker-4", "broker-5"];
    let first =
        TestBroker::start_on_configured(backend, setup.opts(), setup.tweak(names[0])).unwrap();
    let mut all = vec![first];
    for name in names.iter().take(count).skip(1) {
        let b = TestBroker::start_joining(&all[0], setup.opts(), setup.tweak(name)).unwrap();
        all.push(b);
    }
    all
}

fn scenario(
    rt: &tokio::runtime::Runtime,
    a: &Args,
    setup: &Setup,
    name: &'static str,
    backend: Backend,
    count: usize,
) -> Outcome {
    eprintln!("{name}: starting {count} broker(s)");
    let brokers = start_brokers(setup, backend, count);
    let urls: Vec<String> = brokers.iter().map(TestBroker::url).collect();
    let probe = DbProbe::new(&brokers[0].storage_url());
    let clients = load::clients(a.clients, &urls);
    let fleet_guests = Arc::clone(&setup.fleet.guests);
    let warm = rt.block_on(load::run(&clients, &fleet_guests, a.warmup));
    eprintln!(
        "{name}: warm-up {} tokens, errors {:?}",
        warm.tokens, warm.errors
    );
    let propagation = (count > 1).then(|| {
        rt.block_on(async {
            let keys = verifier_lib::token::KeySet::from_cose_key_set(
                &reqwest::get(format!("{}/v1/keys", urls[0]))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
            )
            .unwrap();
            let mut watchers = Vec::new();
            for u in &urls[1..] {
                watchers.push(revocation::subscribe(u).await);
            }
            let minted: Vec<(String, Vec<u8>)> =
                warm.minted.iter().take(REVOCATIONS).cloned().collect();
            revocation::measure(
                &urls[0],
                OPERATOR_TOKEN,
                &mut watchers,
                &minted,
                &keys,
                &Config::default().tokens.issuer,
            )
            .await
        })
    });
    let before = rt.block_on(probe.snapshot_quiet());
    eprintln!("{name}: measuring {} s", a.seconds);
    let stats = rt.block_on(load::run(&clients, &fleet_guests, a.seconds));
    let after_live = rt.block_on(probe.snapshot_live());
    drop(clients);
    drop(brokers);
    let after = rt.block_on(probe.snapshot_after_stop(after_live));
    Outcome {
        name,
        seconds: a.seconds,
        cost: DbCost::between(&before, &after, stats.signing),
        stats,
        propagation,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load_before = loadavg();
    eprintln!("preparing {} guests (chips, VCEKs)", a.guests);
    let fleet = Arc::new(Fleet::new(a.guests));
    let kds_url = rt.block_on(guests::start_kds(&fleet));
    let dir = tempfile::tempdir().unwrap();
    let ark_path = dir.path().join("test-ark.der");
    std::fs::write(&ark_path, &fleet.chain.ark).unwrap();
    let setup = Setup {
        fleet,
        kds_url,
        ark_path,
    };
    // Keeps the throw-away server up between scenarios and after the
    // brokers stop (their database outlives them for the last snapshot).
    let keeper = pg_harness::database().unwrap();
    let pg_settings = rt.block_on(db_cost::configure_server(&keeper.url(), a.pg_fsync));

    let outcomes = vec![
        scenario(&rt, &a, &setup, "(a) 1 broker, SQLite", Backend::Sqlite, 1),
        scenario(
            &rt,
            &a,
            &setup,
            "(b) 1 broker, PostgreSQL",
            Backend::Postgres,
            1,
        ),
        scenario(
            &rt,
            &a,
            &setup,
            "(c) 3 brokers, 1 PostgreSQL",
            Backend::Postgres,
            3,
        ),
    ];
    report(&a, &outcomes, &pg_settings, &load_before);
}

fn report(a: &Args, outcomes: &[Outcome], pg_settings: &str, load_before: &str) {
    let limits = LimitsConfig::default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("fleet_bench: SEV-SNP challenge → report → token, {} clients, {} guests, {} s measured after {} s warm-up", a.clients, a.guests, a.seconds, a.warmup);
    println!(
        "  machine: {cores} cores; load average before {load_before}, after {}",
        loadavg()
    );
    println!(
        "  limits: defaults on (per source {}/s, burst {}); each client its own source \
         127.0.0.{}..127.0.0.{}",
        limits.per_source_per_sec,
        limits.per_source_burst,
        load::FIRST_SOURCE,
        usize::from(load::FIRST_SOURCE) + a.clients - 1
    );
    println!("  SQLite: WAL, synchronous=FULL; PostgreSQL 15: {pg_settings}");
    println!();
    let base = &outcomes[0];
    let mut base_p99 = base.stats.token_us.clone();
    let base_p99 = load::percentile_ms(&mut base_p99, 99.0);
    println!(
        "{:<30} {:>9} {:>6} {:>9} {:>9} {:>6} {:>9} {:>9}",
        "scenario", "tokens/s", "×(a)", "p50 ms", "p99 ms", "×(a)", "cycle p50", "cycle p99"
    );
    for o in outcomes {
        let mut t = o.stats.token_us.clone();
        let mut c = o.stats.cycle_us.clone();
        let p99 = load::percentile_ms(&mut t, 99.0);
        println!(
            "{:<30} {:>9.1} {:>6.2} {:>9.1} {:>9.1} {:>6.2} {:>9.1} {:>9.1}",
            o.name,
            o.rate(),
            o.rate() / base.rate(),
            load::percentile_ms(&mut t, 50.0),
            p99,
            p99 / base_p99,
            load::percentile_ms(&mut c, 50.0),
            load::percentile_ms(&mut c, 99.0),
        );
    }
    println!();
    println!("errors (step status code): ");
    for o in outcomes {
        if o.stats.errors.is_empty() {
            println!("  {:<30} none", o.name);
        }
        for (k, v) in &o.stats.errors {
            println!("  {:<30} {k}: {v}", o.name);
        }
    }
    println!();
    println!("cost per completed appraisal (measured window; broker background work included):");
    for o in outcomes {
        println!("  {}", o.name);
        for line in o.cost.lines(o.stats.tokens) {
            println!("    {line}");
        }
    }
    println!();
    for o in outcomes {
        let Some(p) = &o.propagation else { continue };
        println!(
            "(d) revocation through broker-1 reaching the other brokers' /v1/status/stream \
             ({} revocations, status.poll_interval_ms = {}):",
            p.ack_ms.len(),
            writ_broker::config::StatusConfig::default().poll_interval_ms
        );
        let mut ack: Vec<u32> = p.ack_ms.iter().map(|m| (m * 1e3) as u32).collect();
        println!(
            "  revoke answered by broker-1: p50 {:.1} ms, max {:.1} ms",
            load::percentile_ms(&mut ack, 50.0),
            load::percentile_ms(&mut ack, 100.0)
        );
        for (i, seen) in p.seen_ms.iter().enumerate() {
            let missed = seen.iter().filter(|s| s.is_none()).count();
            let mut v: Vec<u32> = seen.iter().flatten().map(|m| (m * 1e3) as u32).collect();
            println!(
                "  listed on broker-{}'s stream: p50 {:.1} ms, max {:.1} ms, not within 5 s: {missed}",
                i + 2,
                load::percentile_ms(&mut v, 50.0),
                load::percentile_ms(&mut v, 100.0)
            );
        }
        println!("  (from sending the revocation; the list is verified under the fleet key set)");
    }
    println!("(e) failover gap: not measured (clients with several broker URLs are not on main)");
}
