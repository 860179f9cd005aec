//! `writ-broker keys rotate|retire --config FILE`: token-key rotation in the
//! configured `keys.dir` (see `crate::keys`). Both take effect when the
//! broker next starts; run them on the broker's host, then restart it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new token signing key (new `kid`); the old key's public key
    /// stays published for `keys.overlap_secs` so its tokens keep verifying.
    Rotate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stop publishing the previous token key now (its tokens are refused
    /// once the broker restarts).
    Retire {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Exit 0 done, 1 failed, 2 bad configuration.
pub fn run(command: KeysCommand) -> ExitCode {
    let config = match &command {
        KeysCommand::Rotate { config } | KeysCommand::Retire { config } => config,
    };
    let cfg = match Config::load(config.as_deref(), Config::process_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("writ-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = &cfg.keys.dir;
    let result = match command {
        KeysCommand::Rotate { .. } => crate::keys::rotate(
            dir,
            cfg.keys.overlap_secs,
            SystemClock.now(),
        )
        .map(|r| {
            serde_json::json!({
                "rotated": {"old_kid": r.old_kid, "new_kid": r.new_kid, "retire_at": r.retire_at},
                "restart": "restart the broker to sign with the new key",
            })
        }),
        KeysCommand::Retire { .. } => crate::keys::retire(dir).map(|kid| {
            serde_json::json!({
                "retired": kid,
                "restart": "restart the broker to stop publishing it",
            })
        }),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("writ-broker: {e}");
            ExitCode::FAILURE
        }
    }
}
