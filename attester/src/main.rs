//! `writ-attester`: enroll this host, attest it, and run workloads only with
//! a valid execution token.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use writ_attester::commands::{self, Settings};
use writ_attester::error::{denial_reasons, CommandError};
use writ_attester::program::seal_program;
use writ_attester::tpm::{AkAlg, DEFAULT_TCTI};

#[derive(Debug, Parser)]
#[command(
    name = "writ-attester",
    version,
    about = "Writ host attester and workload gate"
)]
struct Cli {
    /// Broker base URL; repeat the flag, or separate URLs with commas, to
    /// name every broker of a fleet (tried in order, sticking to the one
    /// that answered last; the next one on a connection failure, timeout or
    /// 5xx, never on a refusal).
    #[arg(
        long = "broker",
        env = "WRIT_BROKER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8443"
    )]
    brokers: Vec<String>,
    /// No new broker attempt starts after this many milliseconds of one
    /// exchange (every broker is still tried once).
    #[arg(long, env = "WRIT_RETRY_BUDGET_MS", default_value_t = 10_000)]
    retry_budget_ms: u64,
    /// Pause after a round in which every broker failed, doubled each
    /// round (jittered), in milliseconds.
    #[arg(long, env = "WRIT_RETRY_BACKOFF_MS", default_value_t = 200)]
    retry_backoff_ms: u64,
    /// Longest pause between rounds, in milliseconds.
    #[arg(long, env = "WRIT_RETRY_MAX_BACKOFF_MS", default_value_t = 2_000)]
    retry_max_backoff_ms: u64,
    /// Connect timeout for one broker, in milliseconds.
    #[arg(long, env = "WRIT_BROKER_CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    broker_connect_timeout_ms: u64,
    /// Timeout of one request to one broker (answer included), in milliseconds.
    #[arg(long, env = "WRIT_BROKER_TIMEOUT_MS", default_value_t = 15_000)]
    broker_timeout_ms: u64,
    /// Extra CA certificate (PEM) trusted for the broker's TLS certificate.
    #[arg(long, env = "WRIT_BROKER_CA")]
    ca_cert: Option<PathBuf>,
    /// TPM TCTI: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, ...
    #[arg(long, env = "WRIT_TCTI", default_value = DEFAULT_TCTI)]
    tcti: String,
    /// Where the attester keeps its host id and AK.
    #[arg(long, env = "WRIT_STATE_DIR", default_value = "/var/lib/writ-attester")]
    state_dir: PathBuf,
    /// Expected issuer (`iss`) of execution tokens.
    #[arg(long, env = "WRIT_ISSUER", default_value = "writ-broker")]
    issuer: String,
    /// Which evidence to present: TPM quotes, SEV-SNP reports, or both
    /// (`both`: attest only; the SNP report binds the vTPM AK).
    #[arg(long, value_enum, env = "WRIT_EVIDENCE", default_value = "tpm")]
    evidence: EvidenceChoice,
    /// VMPL to request SEV-SNP reports for (0 without an SVSM).
    #[arg(long, env = "WRIT_SNP_VMPL", default_value_t = 0)]
    snp_vmpl: u32,
    /// TCG event log sent with quotes (absent file: not sent).
    #[arg(long, env = "WRIT_EVENTLOG", default_value = writ_attester::logs::DEFAULT_EVENTLOG)]
    eventlog: PathBuf,
    /// IMA ASCII measurement list sent with quotes, incrementally (absent file: not sent).
    #[arg(long, env = "WRIT_IMA_LOG", default_value = writ_attester::logs::DEFAULT_IMA_LOG)]
    ima_log: PathBuf,
    /// Send neither log.
    #[arg(long)]
    no_logs: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EvidenceChoice {
    Tpm,
    Snp,
    Both,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AkChoice {
    Ecc,
    Rsa,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll this host with the broker (EK certificate + credential activation).
    ///
    /// Exit status: 0 enrolled (or, with --if-needed, already enrolled); 75
    /// every broker was unreachable (connection, timeout or 5xx) until the
    /// retry budget was spent, so trying again later may succeed; 1 the
    /// broker refused the enrollment, or a local failure (TPM, state).
    Enroll {
        #[arg(long, value_enum, default_value = "ecc")]
        ak: AkChoice,
        /// Do nothing (exit 0) when the state directory already holds an
        /// enrollment: the boot unit's mode.
        #[arg(long)]
        if_needed: bool,
    },
    /// Attest once and print the appraisal (exit 0 affirming, 1 otherwise).
    Attest,
    /// Run PROGRAM only if the broker issues a valid token for it.
    ///
    /// The bytes executed are the bytes hashed (PROGRAM is copied into a
    /// sealed memory file, hashed and executed from it). The workload starts
    /// with a clean environment: WRIT_TOKEN, WRIT_KEY and only the variables
    /// named with --env.
    Run {
        /// Workload name as the policy knows it.
        #[arg(long)]
        workload: String,
        /// Private directory (0700) for the workload's key; default `$XDG_RUNTIME_DIR/writ`.
        #[arg(long, env = "WRIT_RUNTIME_DIR")]
        runtime_dir: Option<PathBuf>,
        /// The attester daemon's socket; used when it exists.
        #[arg(long, env = "WRIT_SOCKET", default_value = writ_attester::workload_api::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Obtain the token with a quote (or report) taken here, even when
        /// the daemon's socket exists (the `writ-exec@` unit's mode).
        #[arg(long)]
        direct: bool,
        #[command(flatten)]
        env: writ_attester::program::EnvArgs,
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
        program: Vec<String>,
    },
    /// Print a token for WORKLOAD from the daemon (base64url), for scripts:
    /// its key and the token are written to WORKLOAD.pem and WORKLOAD.token
    /// in the runtime directory, where `proof --workload` finds them.
    Token {
        /// Workload name as the daemon's configuration and the policy know it.
        #[arg(long)]
        workload: String,
        /// Private directory (0700) for the key and token; default `$XDG_RUNTIME_DIR/writ`.
        #[arg(long, env = "WRIT_RUNTIME_DIR")]
        runtime_dir: Option<PathBuf>,
        /// The attester daemon's socket.
        #[arg(long, env = "WRIT_SOCKET", default_value = writ_attester::workload_api::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Print the proof-of-possession header (`writ-pop: ...`) for one request
    /// through a Writ gate, signed with the workload's key: `curl -H
    /// "Authorization: Writ $TOKEN" -H "$(writ-attester proof ...)" URL`.
    Proof {
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request's absolute URL (its path and query are signed).
        #[arg(long)]
        url: String,
        /// File holding the exact request body (default: empty body).
        #[arg(long)]
        body: Option<PathBuf>,
        /// Use WORKLOAD.token and WORKLOAD.pem from `token`; without it,
        /// WRIT_TOKEN and WRIT_KEY (inside a workload started by `run`).
        #[arg(long)]
        workload: Option<String>,
        /// Where `token` wrote them; default `$XDG_RUNTIME_DIR/writ`.
        #[arg(long, env = "WRIT_RUNTIME_DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// Print a draft policy (TOML) accepting this host's current PCRs and the
    /// given workloads — reference values from a golden host.
    Reference {
        /// Policy id of the draft.
        #[arg(long, default_value = "draft")]
        id: String,
        /// sha256 PCRs to pin, e.g. `0-7,16`.
        #[arg(long, default_value = "0-7")]
        pcrs: String,
        /// `NAME=PROGRAM`; repeatable.
        #[arg(long = "workload")]
        workloads: Vec<String>,
    },
    /// Re-attest continuously and serve the local workload API on a Unix socket.
    Daemon {
        /// Daemon configuration (TOML): [daemon], [[workloads]], [[launchers]].
        #[arg(long)]
        config: PathBuf,
    },
}

/// `enroll`'s exit status when every broker stayed unreachable
/// (`EX_TEMPFAIL`): the boot unit restarts on it, and only on it.
const EXIT_BROKERS_UNREACHABLE: u8 = 75;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let evidence = cli.evidence;
    let vmpl = cli.snp_vmpl;
    let retry = writ_attester::client::RetryPolicy {
        connect_timeout: Duration::from_millis(cli.broker_connect_timeout_ms),
        request_timeout: Duration::from_millis(cli.broker_timeout_ms),
        budget: Duration::from_millis(cli.retry_budget_ms),
        initial_backoff: Duration::from_millis(cli.retry_backoff_ms),
        max_backoff: Duration::from_millis(cli.retry_max_backoff_ms),
    };
    let settings = Settings {
        broker: cli.brokers.join(","),
        failover: writ_attester::client::Failover::new(retry),
        ca_cert: cli.ca_cert,
        tcti: cli.tcti,
        state_dir: cli.state_dir,
        issuer: cli.issuer,
        logs: if cli.no_logs {
            writ_attester::logs::LogSources::none()
        } else {
            writ_attester::logs::LogSources {
                eventlog: Some(cli.eventlog),
                ima: Some(cli.ima_log),
            }
        },
    };
    match cli.command {
        Command::Enroll { ak, if_needed } => {
            let ak = match ak {
                AkChoice::Ecc => AkAlg::EccP256,
                AkChoice::Rsa => AkAlg::Rsa2048,
            };
            let done = if if_needed {
                commands::enroll_unless_enrolled(&settings, ak).map(commands::Enrollment::response)
            } else {
                commands::enroll(&settings, ak)
            };
            match done {
                Ok(done) => print_json(&done, ExitCode::SUCCESS),
                Err(e) if e.is_brokers_unreachable() => {
                    eprintln!("writ-attester: enroll failed: {}", denial_reasons(&e));
                    ExitCode::from(EXIT_BROKERS_UNREACHABLE)
                }
                Err(e) => fail("enroll failed", &e),
            }
        }
        Command::Attest if evidence != EvidenceChoice::Tpm => {
            match writ_attester::snp_cli::attest(&settings, evidence == EvidenceChoice::Both, vmpl)
            {
                Ok(a) => {
                    let code = if a.iter().all(|x| x.verdict == "affirming") {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    };
                    print_json(&a, code)
                }
                Err(e) => fail("attest failed", &e),
            }
        }
        Command::Attest => match commands::attest(&settings) {
            Ok(a) => {
                let code = if a.verdict == "affirming" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                };
                print_json(&a, code)
            }
            Err(e) => fail("attest failed", &e),
        },
        Command::Reference {
            id,
            pcrs,
            workloads,
        } => {
            let draft = writ_attester::reference::parse_pcr_list(&pcrs).and_then(|pcrs| {
                let mut tpm = writ_attester::tpm::Tpm::open(&settings.tcti)?;
                writ_attester::reference::draft_policy(&mut tpm, &id, &pcrs, &workloads)
            });
            match draft {
                Ok(s) => {
                    print!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("writ-attester: reference: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Daemon { config } => {
            let cfg = match writ_attester::daemon::DaemonConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("writ-attester: {e}");
                    return ExitCode::from(2);
                }
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            match writ_attester::daemon::run(settings, cfg, stop) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("writ-attester daemon: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token {
            workload,
            runtime_dir,
            socket,
        } => match writ_attester::workload_cli::token(
            &settings,
            &workload,
            &socket,
            runtime_dir.as_deref(),
        ) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("writ-attester: token for {workload}: {e}");
                ExitCode::from(3)
            }
        },
        Command::Proof {
            method,
            url,
            body,
            workload,
            runtime_dir,
        } => {
            let credentials = match workload {
                Some(workload) => writ_attester::workload_cli::Credentials::Workload {
                    workload,
                    runtime_dir,
                },
                None => writ_attester::workload_cli::Credentials::Environment,
            };
            match writ_attester::workload_cli::proof(&credentials, &method, &url, body.as_deref()) {
                Ok(header) => {
                    println!("{header}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("writ-attester: proof: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            workload,
            program,
            runtime_dir,
            socket,
            direct,
            env,
        } => {
            let Some((name, args)) = program.split_first() else {
                eprintln!("writ-attester: run: no program given");
                return ExitCode::from(2);
            };
            let refuse = |e: &CommandError| {
                eprintln!(
                    "writ-attester: refused to run {name}: {}",
                    denial_reasons(e)
                );
                ExitCode::from(3)
            };
            let env = match env.workload_env() {
                Ok(env) => env,
                Err(e) => {
                    eprintln!("writ-attester: run: {e}");
                    return ExitCode::from(2);
                }
            };
            let sealed = match seal_program(name) {
                Ok(p) => p,
                Err(e) => return refuse(&e),
            };
            let source = match evidence {
                EvidenceChoice::Tpm => writ_attester::launch::Evidence::Tpm,
                EvidenceChoice::Snp => writ_attester::launch::Evidence::Snp { vmpl },
                EvidenceChoice::Both => {
                    eprintln!("writ-attester: run: --evidence both is for attest; use tpm or snp");
                    return ExitCode::from(2);
                }
            };
            let prepared = match writ_attester::launch::prepare(
                &settings,
                &workload,
                sealed,
                runtime_dir.as_deref(),
                (!direct).then_some(socket.as_path()),
                source,
            ) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("writ-attester: refused to run {name}: {e}");
                    return ExitCode::from(3);
                }
            };
            let verified = &prepared.verified;
            let prog = &prepared.program;
            eprintln!(
                "writ-attester: token {} for workload {} (expires {}, key-bound{}); starting {}",
                hex::encode(&verified.claims.cti),
                workload,
                verified.claims.exp,
                if prepared.via_daemon {
                    ", via daemon"
                } else {
                    ""
                },
                prog.path.display()
            );
            let env = env.with_credentials(&prepared.token, &prepared.key_path);
            let e = match prog.command(args, &env) {
                Ok(workload) => workload.exec(),
                Err(e) => e,
            };
            refuse(&e)
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T, code: ExitCode) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            code
        }
        Err(e) => {
            eprintln!("writ-attester: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fail(what: &str, e: &CommandError) -> ExitCode {
    eprintln!("writ-attester: {what}: {}", denial_reasons(e));
    ExitCode::FAILURE
}
