//! The `writ-broker` command line: `serve`, the offline evidence, policy
//! and audit tools, `keys` (token-key rotation), `operator-token` and
//! `config`. `main.rs` only calls [`main`].

pub mod audit;
pub mod evidence;
pub mod keys;
pub mod operator;
mod operator_token;
pub mod policy;
mod stdout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use self::audit::AuditCommand;
use self::evidence::EvidenceCommand;
use crate::config::Config;
use crate::telemetry::logs::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "writ-broker", version, about = "Writ attestation broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the /v1 API.
    Serve {
        /// TOML configuration file (layered over defaults, under WRIT_* env vars).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log lines as human text or one JSON object per line.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check evidence offline and print the verdict as JSON
    /// (exit 0 valid, 1 invalid, 2 unusable input, 3 valid but signed
    /// with SHA-1: `quote` only).
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Policy tools (`policy learn`: draft a policy from a golden host's logs).
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Audit the signed decision log offline: `verify` (exit 0 consistent,
    /// 1 not, 2 unusable input) and `show` (a host's or token's history).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Token-key rotation: `rotate` (new signing key; the old one stays
    /// published for `keys.overlap_secs`) and `retire` (stop publishing it).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Make an operator bearer token: prints the token (give it to the
    /// operator) and the `[[operators.tokens]]` entry for the broker's
    /// configuration (only the token's SHA-256 is stored there).
    OperatorToken {
        #[arg(long)]
        name: String,
    },
    /// Hosts on a running broker: `list`, `show`, `revoke`, `reinstate`
    /// (operator token from WRIT_OPERATOR_TOKEN or --token-file).
    Hosts {
        #[command(subcommand)]
        command: operator::HostsCommand,
        #[command(flatten)]
        connection: operator::Connection,
    },
    /// Tokens on a running broker: `revoke`.
    Tokens {
        #[command(subcommand)]
        command: operator::TokensCommand,
        #[command(flatten)]
        connection: operator::Connection,
    },
    /// Workloads on a running broker: `revoke`.
    Workloads {
        #[command(subcommand)]
        command: operator::WorkloadsCommand,
        #[command(flatten)]
        connection: operator::Connection,
    },
    /// Fleet summary of a running broker: hosts by status, failing hosts,
    /// readiness.
    Status {
        #[command(flatten)]
        connection: operator::Connection,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the effective configuration (defaults + file + environment) as TOML.
    Config {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Parse the command line and run the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => {
            crate::telemetry::logs::init(log_format);
            let cfg = match Config::load(config.as_deref(), Config::process_env()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("writ-broker: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("writ-broker: starting runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(crate::server::serve(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("writ-broker: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Evidence { command } => evidence::run(command),
        Command::Policy { command } => policy::run(command),
        Command::Audit { command } => audit::run(command),
        Command::Keys { command } => keys::run(command),
        Command::OperatorToken { name } => operator_token::run(&name),
        Command::Hosts {
            command,
            connection,
        } => operator::run_hosts(&connection, command),
        Command::Tokens {
            command,
            connection,
        } => operator::run_tokens(&connection, command),
        Command::Workloads {
            command,
            connection,
        } => operator::run_workloads(&connection, command),
        Command::Status { connection } => operator::run_status(&connection),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "writ-broker",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Config { config } => {
            match Config::load(config.as_deref(), Config::process_env()) {
                Ok(c) => match toml::to_string_pretty(&c) {
                    Ok(s) => {
                        print!("{s}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("writ-broker: {e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("writ-broker: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
