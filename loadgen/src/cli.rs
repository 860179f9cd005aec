//! The `writ-loadgen` command line.
//!
//! ```text
//! writ-loadgen setup   --state-dir D [--hosts N]     CA, identities, D/policy.toml
//! writ-loadgen enroll  --state-dir D --broker URL …  N hosts enroll
//! writ-loadgen fleet   …  --interval-secs T          N hosts re-attest every T s
//! writ-loadgen tokens  …  --rate R                   R key-bound tokens/s, open loop
//! writ-loadgen mixed   …                             fleet and tokens together
//! writ-loadgen signed  …  --rate R                   R tokens/s on request-key signatures
//! writ-loadgen ceiling --state-dir D                 the in-process ceiling
//! ```
//!
//! The exit status is 0 only when every exchange sent succeeded (and every
//! token verified) and each operation succeeded at least once; 2 otherwise;
//! 1 when the run could not start. Exchanges the load generator could not
//! send (a host still busy, no idle host) are reported as "not sent".

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::exchange::{unix_now, Broker};
use crate::fleet::{policy_toml, Fleet};
use crate::report::{load_average, RunReport};
use crate::run::{Mode, RunConfig, MAX_DURATION};
use crate::target::Target;

/// Most simulated hosts in one run.
pub const MAX_HOSTS: usize = crate::soft_tpm::identities::MAX_TPMS;
/// Highest token rate accepted.
pub const MAX_RATE: f64 = 100_000.0;

#[derive(Debug, Parser)]
#[command(
    name = "writ-loadgen",
    about = "Simulated TPM hosts loading a Writ broker on loopback, and the in-process ceiling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the test EK CA and the hosts' identities in the state
    /// directory, and write the policy that affirms them (STATE/policy.toml).
    Setup(SetupArgs),
    /// Enroll every host (EK certificate, credential activation).
    Enroll(LoadArgs),
    /// Every host re-attests every --interval-secs, jittered (open loop).
    Fleet(LoadArgs),
    /// Key-bound token requests at --rate per second (open loop).
    Tokens(LoadArgs),
    /// fleet and tokens at once.
    Mixed(LoadArgs),
    /// Key-bound tokens on requests signed by each host's request key (no
    /// quote) at --rate per second; keep --duration-secs below the broker's
    /// hosts.signed_request_max_age_secs (120 s by default).
    Signed(LoadArgs),
    /// The same appraisal and token mint in-process, on every core.
    Ceiling(CeilingArgs),
}

#[derive(Debug, Args)]
struct SetupArgs {
    /// Identity cache: test EK CA, the simulated TPMs' keys, enrolled hosts.
    #[arg(long)]
    state_dir: PathBuf,
    /// Identities to generate now (more are made on demand).
    #[arg(long, default_value_t = 1)]
    hosts: usize,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The broker, on loopback only: http://127.0.0.1:PORT.
    #[arg(long)]
    broker: String,
    #[arg(long)]
    state_dir: PathBuf,
    /// Simulated hosts.
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// How long to send load (at most 4 hours).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// fleet/mixed: each host re-attests this often.
    #[arg(long, default_value_t = 60.0)]
    interval_secs: f64,
    /// fleet/mixed: ± this fraction of the interval.
    #[arg(long, default_value_t = 0.1)]
    jitter: f64,
    /// tokens/mixed/signed: token requests per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// enroll: enrollments at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Most exchanges in flight at once (each holds at most one connection;
    /// keep it below the broker's `limits.max_connections`, 1024 by default).
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
    /// Source addresses (127.0.1.1 upwards) the hosts are spread over.
    #[arg(long, default_value_t = 256)]
    sources: usize,
    /// The broker's process id, to report its CPU per decision.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// The broker's `tokens.issuer`.
    #[arg(long, default_value = "writ-broker")]
    issuer: String,
    /// After the load, measure the in-process ceiling this long and report
    /// the achieved rates as a fraction of it (0: skip).
    #[arg(long, default_value_t = 0)]
    ceiling_secs: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Append the id (cti, hex) of every token received and verified to
    /// this file, one per line (`writ-broker audit verify --expect-tokens`).
    #[arg(long)]
    tokens_out: Option<PathBuf>,
    /// Threads of the load generator's runtime (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Args)]
struct CeilingArgs {
    #[arg(long)]
    state_dir: PathBuf,
    /// How long to measure.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error("{field}: expected {expected}, got {actual}")]
    Invalid {
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
    #[error(transparent)]
    Tpm(#[from] crate::soft_tpm::SoftTpmError),
    #[error("broker: {0}")]
    Broker(#[from] crate::exchange::ExchangeError),
    #[error(transparent)]
    Ceiling(#[from] crate::ceiling::CeilingError),
    #[error("{what}: {reason}")]
    Io { what: String, reason: String },
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("writ-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<bool, CliError> {
    match command {
        Command::Setup(a) => setup(&a).map(|()| true),
        Command::Enroll(a) => load(Mode::Enroll, a),
        Command::Fleet(a) => load(Mode::Fleet, a),
        Command::Tokens(a) => load(Mode::Tokens, a),
        Command::Mixed(a) => load(Mode::Mixed, a),
        Command::Signed(a) => load(Mode::Signed, a),
        Command::Ceiling(a) => {
            let fleet = Fleet::open(&a.state_dir, 256, 1, unix_now())?;
            let report = crate::ceiling::measure(
                &fleet,
                a.threads.unwrap_or_else(cores),
                Duration::from_secs(a.duration_secs.clamp(1, 600)),
                unix_now(),
            )?;
            println!(
                "in-process ceiling (appraisal of a quote with a {}-event log + decision + \
                 token mint, {} threads, {:.1} s): {:.0} decisions/s, {:.1} µs per decision \
                 per thread",
                fleet.log.events,
                report.threads,
                report.seconds,
                report.per_sec,
                report.us_per_decision
            );
            Ok(true)
        }
    }
}

fn setup(a: &SetupArgs) -> Result<(), CliError> {
    let fleet = Fleet::open(&a.state_dir, a.hosts.clamp(1, MAX_HOSTS), 1, unix_now())?;
    let policy_path = a.state_dir.join("policy.toml");
    std::fs::write(&policy_path, policy_toml(&fleet.log)).map_err(|e| CliError::Io {
        what: policy_path.display().to_string(),
        reason: e.to_string(),
    })?;
    println!("EK CA (trust.ek_roots): {}", fleet.ca_pem_path.display());
    println!("policy (policy.file):   {}", policy_path.display());
    println!("identities:             {}", fleet.hosts.len());
    Ok(())
}

fn check(field: &'static str, ok: bool, expected: &str, actual: String) -> Result<(), CliError> {
    if ok {
        Ok(())
    } else {
        Err(CliError::Invalid {
            field,
            expected: expected.to_owned(),
            actual,
        })
    }
}

fn load(mode: Mode, a: LoadArgs) -> Result<bool, CliError> {
    let target = Target::parse(&a.broker)?;
    check(
        "--hosts",
        (1..=MAX_HOSTS).contains(&a.hosts),
        &format!("1..={MAX_HOSTS}"),
        a.hosts.to_string(),
    )?;
    let duration = Duration::from_secs(a.duration_secs);
    check(
        "--duration-secs",
        (1..=MAX_DURATION.as_secs()).contains(&a.duration_secs),
        &format!("1..={}", MAX_DURATION.as_secs()),
        a.duration_secs.to_string(),
    )?;
    check(
        "--rate",
        a.rate > 0.0 && a.rate <= MAX_RATE,
        &format!("0 < rate <= {MAX_RATE}"),
        a.rate.to_string(),
    )?;
    check(
        "--interval-secs",
        (0.1..=86_400.0).contains(&a.interval_secs),
        "0.1..=86400",
        a.interval_secs.to_string(),
    )?;
    check(
        "--jitter",
        (0.0..=0.9).contains(&a.jitter),
        "0..=0.9",
        a.jitter.to_string(),
    )?;
    check(
        "--concurrency",
        (1..=4096).contains(&a.concurrency),
        "1..=4096",
        a.concurrency.to_string(),
    )?;
    check(
        "--max-in-flight",
        (1..=65_536).contains(&a.max_in_flight),
        "1..=65536",
        a.max_in_flight.to_string(),
    )?;
    check(
        "--ceiling-secs",
        a.ceiling_secs <= 600,
        "0..=600",
        a.ceiling_secs.to_string(),
    )?;
    let sources = target.sources(a.sources)?;
    let fleet = Arc::new(Fleet::open(
        &a.state_dir,
        a.hosts,
        sources.len(),
        unix_now(),
    )?);
    let cfg = RunConfig {
        mode,
        duration,
        interval: Duration::from_secs_f64(a.interval_secs),
        jitter: a.jitter,
        rate: a.rate,
        concurrency: a.concurrency,
        max_in_flight: a.max_in_flight,
        broker_pid: a.broker_pid,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.unwrap_or_else(cores).max(1))
        .enable_all()
        .build()
        .map_err(|e| CliError::Io {
            what: "runtime".into(),
            reason: e.to_string(),
        })?;
    let phases = runtime.block_on(async {
        let mut broker = Broker::connect(target.clone(), &sources, &a.issuer).await?;
        if let Some(path) = &a.tokens_out {
            broker.record_tokens_to(path).map_err(|e| CliError::Io {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let broker = Arc::new(broker);
        fleet.load_enrolled(&broker.kid);
        let phases = crate::run::run(Arc::clone(&fleet), Arc::clone(&broker), &cfg)
            .await
            .map_err(|e| CliError::Io {
                what: "histogram".into(),
                reason: e.to_string(),
            })?;
        fleet.save_enrolled(&broker.kid).map_err(|e| CliError::Io {
            what: "enrolled hosts file".into(),
            reason: e.to_string(),
        })?;
        Ok::<_, CliError>(phases)
    })?;
    drop(runtime);
    let ceiling = if a.ceiling_secs > 0 {
        Some(crate::ceiling::measure(
            &fleet,
            cores(),
            Duration::from_secs(a.ceiling_secs),
            unix_now(),
        )?)
    } else {
        None
    };
    let report = RunReport {
        target: target.base.clone(),
        hosts: fleet.hosts.len(),
        sources: sources.len(),
        config: cfg,
        phases,
        ceiling,
        load_average: load_average(),
    };
    print!("{}", report.text());
    if let Some(path) = &a.report_json {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| CliError::Io {
            what: "report".into(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, json).map_err(|e| CliError::Io {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(report.clean())
}
