//! `writ-run`: start a program with a token from the attester daemon, and
//! nothing else. The fast path of `writ-attester run` (same checks, same
//! sealed image, same environment) in a binary that links no TPM library,
//! HTTP client or trust store, so a gated start costs little more than the
//! program's own start. Without a daemon socket it refuses: a fresh quote
//! is `writ-attester run`'s job.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use writ_attester::error::denial_reasons;
use writ_attester::program::{seal_program, EnvArgs};

#[derive(Debug, Parser)]
#[command(
    name = "writ-run",
    version,
    about = "Run PROGRAM only with a valid Writ token from the attester daemon",
    long_about = "Run PROGRAM only with a valid Writ token from the attester daemon.\n\n\
        The bytes executed are the bytes the daemon hashed (PROGRAM is copied into a \
        sealed memory file, the daemon measures it, and it is executed from it). The \
        token is checked here against the key set and status list the daemon hands \
        over. The workload starts with a clean environment: WRIT_TOKEN, WRIT_KEY and \
        only the variables named with --env.\n\n\
        Exit status: the program's (it replaces this process); 3 refused (the program \
        did not start); 2 usage."
)]
struct Cli {
    /// Workload name as the policy knows it.
    #[arg(long)]
    workload: String,
    /// The attester daemon's socket (it must list this binary in its
    /// `[[launchers]]`).
    #[arg(long, env = "WRIT_SOCKET", default_value = writ_attester::workload_api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Expected issuer (`iss`) of execution tokens.
    #[arg(long, env = "WRIT_ISSUER", default_value = "writ-broker")]
    issuer: String,
    /// Private directory (0700) for the workload's key; default `$XDG_RUNTIME_DIR/writ`.
    #[arg(long, env = "WRIT_RUNTIME_DIR")]
    runtime_dir: Option<PathBuf>,
    #[command(flatten)]
    env: EnvArgs,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
    program: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some((name, args)) = cli.program.split_first() else {
        eprintln!("writ-run: no program given");
        return ExitCode::from(2);
    };
    let env = match cli.env.workload_env() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("writ-run: {e}");
            return ExitCode::from(2);
        }
    };
    let refused = |why: &dyn std::fmt::Display| {
        eprintln!("writ-run: refused to run {name}: {why}");
        ExitCode::from(3)
    };
    if !cli.socket.exists() {
        return refused(&format!(
            "no attester daemon socket at {} (writ-run takes tokens from the daemon only; \
             `writ-attester run --direct` takes a quote itself)",
            cli.socket.display()
        ));
    }
    let sealed = match seal_program(name) {
        Ok(p) => p,
        Err(e) => return refused(&denial_reasons(&e)),
    };
    let prepared = match writ_attester::launch::prepare_via_daemon(
        &cli.issuer,
        &cli.workload,
        sealed,
        cli.runtime_dir.as_deref(),
        &cli.socket,
    ) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    let claims = &prepared.verified.claims;
    eprintln!(
        "writ-run: token {} for workload {} (expires {}, key-bound, via daemon); starting {}",
        hex::encode(&claims.cti),
        cli.workload,
        claims.exp,
        prepared.program.path.display()
    );
    let env = env.with_credentials(&prepared.token, &prepared.key_path);
    let e = match prepared.program.command(args, &env) {
        Ok(workload) => workload.exec(),
        Err(e) => e,
    };
    refused(&denial_reasons(&e))
}
