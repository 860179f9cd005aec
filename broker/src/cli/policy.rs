//! `writ-broker policy learn`: print a draft policy learned from a golden
//! host's event log and IMA list. It activates nothing: an operator reviews
//! the draft and installs it as the policy file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use verifier_lib::policy::learn::{learn, LearnInput};

/// `writ-broker policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print a draft policy (TOML) from a golden host's logs.
    Learn {
        /// The TCG event log (`binary_bios_measurements`).
        #[arg(long)]
        eventlog: Option<PathBuf>,
        /// The IMA ASCII measurement list.
        #[arg(long)]
        ima: Option<PathBuf>,
        /// Policy id of the draft.
        #[arg(long, default_value = "learned")]
        id: String,
        /// Group name of the draft.
        #[arg(long, default_value = "learned")]
        group: String,
        /// Host ids the group covers (repeatable; default `*`).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Validate a policy file offline (exit 0 valid, 1 invalid, 2
    /// unreadable) and print its id, hash, groups and workloads.
    Check {
        file: PathBuf,
        /// Print the parsed policy as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run a policy command: the draft on stdout, exit 0; 2 on unusable input.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Check { file, json } => check(&file, json),
        PolicyCommand::Learn {
            eventlog,
            ima,
            id,
            group,
            hosts,
        } => {
            let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
                p.as_ref()
                    .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
                    .transpose()
            };
            let (ev, im) = match (read(&eventlog), read(&ima)) {
                (Ok(e), Ok(i)) => (e, i),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("writ-broker: policy learn: {e}");
                    return ExitCode::from(2);
                }
            };
            let input = LearnInput {
                id: &id,
                group: &group,
                hosts,
                eventlog: ev.as_deref(),
                ima: im.as_deref(),
            };
            match learn(&input) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("writ-broker: policy learn: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// `policy check FILE`.
fn check(file: &std::path::Path, json: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("writ-broker: policy check: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match verifier_lib::policy::Policy::parse_toml(&text) {
        Ok(p) if json => match serde_json::to_string_pretty(&p) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("writ-broker: policy check: {e}");
                ExitCode::from(2)
            }
        },
        Ok(p) => {
            println!("valid policy {} (sha256 {})", p.id, hex::encode(&p.hash));
            for g in &p.groups {
                println!("group {}: hosts {}", g.name, g.hosts.join(", "));
            }
            for w in &p.workloads {
                println!("workload {}", w.name);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("writ-broker: policy check: {}: {e}", file.display());
            ExitCode::from(1)
        }
    }
}
