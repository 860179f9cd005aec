//! `writ-broker policy ...`: `learn` prints a draft policy learned from a
//! golden host's event log and IMA list (it activates nothing); the other
//! commands work on the policy versions in the store (see `docs/policy.md`):
//! `activate` (import, validate, activate, logged), `shadow` (load or clear
//! a candidate), `show`, `history` and `diff-report`. `sign` writes a
//! policy file's detached signature with an operator key; where
//! `policy.signing_keys` is set, `activate` and `shadow` refuse a policy
//! without a valid signature by one of them, or older than the active one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use verifier_lib::policy::learn::{learn, LearnInput};
use verifier_lib::policy::signing::PolicySigners;
use verifier_lib::token::policy_signature::sign_policy;
use verifier_lib::token::SigningKey;

use crate::audit::policy::{activate, import, ActivateError, Activation, ActivationLog};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::decision::shadow::{report, ShadowReport};
use crate::store::{PolicySlot, Store};

/// Which store a command works on.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The storage URL (`sqlite://PATH` or `postgres://...`).
    #[arg(long, conflicts_with = "config")]
    pub db: Option<String>,
    /// The broker's configuration file (its `storage.url` and
    /// `policy.signing_keys`; WRIT_* env vars apply). Neither: the default
    /// configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An operator public key whose policy signatures are accepted, on top
    /// of the configuration's `policy.signing_keys` (repeatable; with
    /// `--db`, give the keys the brokers use so this command checks as
    /// they do: they check each stored version again when they load it).
    #[arg(long = "signing-key")]
    pub signing_keys: Vec<PathBuf>,
}

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
    /// Validate FILE, store it as a policy version and make it the active
    /// policy (a logged decision). Activating the shadow candidate promotes
    /// it and clears the shadow. Exit 0 done, 1 refused (invalid policy),
    /// 2 unusable input or store.
    Activate {
        file: PathBuf,
        /// The detached signature (default: FILE.sig, if it exists).
        #[arg(long)]
        signature: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Load FILE as the shadow candidate: every appraisal is also decided
    /// under it and differences are recorded (nothing else changes). With
    /// `--clear`, unload the candidate.
    Shadow {
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        file: Option<PathBuf>,
        #[arg(long)]
        clear: bool,
        /// The detached signature (default: FILE.sig, if it exists).
        #[arg(long, conflicts_with = "clear")]
        signature: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Sign FILE with an operator key (P-256 PKCS#8 PEM, e.g. from
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`):
    /// writes its detached COSE_Sign1 signature to FILE.sig (or `--out`)
    /// and prints the key id brokers record as the signer. The policy must
    /// carry `version = N`. Exit 0 signed, 1 refused, 2 unusable input.
    Sign {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the active (or `--shadow`) policy document on stdout, its
    /// version, hash and times on stderr.
    Show {
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the activations, newest first.
    History {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print which hosts the shadow candidate decides differently (would
    /// fail, or would pass) and the rules that fail under each policy.
    DiffReport {
        /// The most difference rows read (newest first).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Why a store command failed (exit 1: `Refused`, else 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyCliError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Activate(#[from] ActivateError),
    #[error("no {slot} policy in the store")]
    Empty { slot: &'static str },
    #[error("starting runtime: {0}")]
    Runtime(std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`policy learn`, `check` and `sign` do not work on the store")]
    NotAStoreCommand,
    #[error("{0}")]
    Load(#[from] crate::policy::PolicyLoadError),
}

impl PolicyCliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            PolicyCliError::Activate(ActivateError::Invalid(_) | ActivateError::Signature(_)) => {
                ExitCode::from(1)
            }
            _ => ExitCode::from(2),
        }
    }
}

/// Run a policy command.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    let on_store = match cmd {
        PolicyCommand::Check { file, json } => return check(&file, json),
        PolicyCommand::Sign { file, key, out } => return sign(&file, &key, out),
        PolicyCommand::Learn {
            eventlog,
            ima,
            id,
            group,
            hosts,
        } => return run_learn(eventlog, ima, id, group, hosts),
        other => other,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&PolicyCliError::Runtime(e)),
    };
    match rt.block_on(run_on_store(on_store)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &PolicyCliError) -> ExitCode {
    eprintln!("writ-broker: policy: {e}");
    e.exit_code()
}

/// The operator keys this command checks signatures with: the
/// configuration's `policy.signing_keys` and `--signing-key`.
fn signers(args: &StoreArgs) -> Result<PolicySigners, PolicyCliError> {
    let mut paths = Config::load(args.config.as_deref(), Config::process_env())?
        .policy
        .signing_keys;
    paths.extend(args.signing_keys.iter().cloned());
    Ok(crate::policy::signers(&paths)?)
}

/// The signature given, or FILE.sig when it exists.
fn signature(
    file: &std::path::Path,
    given: Option<&std::path::Path>,
) -> Result<Option<Vec<u8>>, PolicyCliError> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => {
            let p = crate::policy::file::signature_path(file);
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    std::fs::read(&path)
        .map(Some)
        .map_err(|source| PolicyCliError::Read { path, source })
}

async fn open(args: &StoreArgs) -> Result<Store, PolicyCliError> {
    let url = match &args.db {
        Some(url) => url.clone(),
        None => {
            Config::load(args.config.as_deref(), Config::process_env())?
                .storage
                .url
        }
    };
    Ok(Store::open(&url).await?)
}

fn read(path: &std::path::Path) -> Result<String, PolicyCliError> {
    std::fs::read_to_string(path).map_err(|source| PolicyCliError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The store commands (every one but `learn`); output on stdout.
pub async fn run_on_store(cmd: PolicyCommand) -> Result<(), PolicyCliError> {
    let now = SystemClock.now();
    match cmd {
        PolicyCommand::Learn { .. } | PolicyCommand::Check { .. } | PolicyCommand::Sign { .. } => {
            Err(PolicyCliError::NotAStoreCommand)
        }
        PolicyCommand::Activate {
            file,
            signature: sig_path,
            store,
        } => {
            let text = read(&file)?;
            let sig = signature(&file, sig_path.as_deref())?;
            let signers = signers(&store)?;
            // Validated (and its signature checked) before the store is touched.
            crate::audit::policy::check(&signers, &text, sig.as_deref())?;
            let store = open(&store).await?;
            let (version, policy) = import(&store, &text, sig.as_deref(), &signers, now).await?;
            if let Some(signer) = &policy.signer {
                println!("signature by {signer} verified");
            }
            match activate(ActivationLog::Store(&store), &store, &version, now).await? {
                Activation::AlreadyActive => println!(
                    "policy {} (version {}, {}) is already active",
                    version.policy_id, version.id, version.hash
                ),
                Activation::Activated {
                    leaf_index,
                    previous,
                } => println!(
                    "activated policy {} (version {}, {}), replacing {}; audit leaf {leaf_index}",
                    version.policy_id,
                    version.id,
                    version.hash,
                    previous.map_or_else(|| "none".to_owned(), |p| p.hash),
                ),
            }
            Ok(())
        }
        PolicyCommand::Shadow {
            file,
            clear,
            signature: sig_path,
            store,
        } => {
            let (text, sig) = match (&file, clear) {
                (Some(f), false) => (Some(read(f)?), signature(f, sig_path.as_deref())?),
                _ => (None, None),
            };
            let signers = signers(&store)?;
            if let Some(text) = &text {
                crate::audit::policy::check(&signers, text, sig.as_deref())?;
            }
            let store = open(&store).await?;
            match text {
                Some(text) => {
                    // A candidate older than the active policy is refused too.
                    let (version, _) = import(&store, &text, sig.as_deref(), &signers, now).await?;
                    store.set_policy_shadow(Some(version.id), now).await?;
                    println!(
                        "shadow policy {} (version {}, {}) loaded; every appraisal is now also decided under it",
                        version.policy_id, version.id, version.hash
                    );
                }
                None => {
                    store.set_policy_shadow(None, now).await?;
                    println!("shadow policy cleared");
                }
            }
            Ok(())
        }
        PolicyCommand::Show { shadow, store } => {
            let store = open(&store).await?;
            let slot = if shadow {
                PolicySlot::Shadow
            } else {
                PolicySlot::Active
            };
            let v = store.policy_in(slot).await?.ok_or(PolicyCliError::Empty {
                slot: slot.as_str(),
            })?;
            eprintln!(
                "# {} policy {}: version {}, sha256 {}, signed by {}, created {}, activated {}",
                slot.as_str(),
                v.policy_id,
                v.id,
                v.hash,
                v.signer.as_deref().unwrap_or("nobody"),
                v.created_at,
                v.activated_at
                    .map_or_else(|| "never".to_owned(), |t| t.to_string()),
            );
            super::stdout::write(&v.body);
            Ok(())
        }
        PolicyCommand::History { limit, json, store } => {
            let store = open(&store).await?;
            let rows = store
                .policy_history(limit.min(crate::store::policy::MAX_POLICY_ROWS))
                .await?;
            if json {
                super::stdout::line(&serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            let mut out = format!(
                "{:<6} {:<12} {:<8} {:<20} {:<64} PREVIOUS\n",
                "SEQ", "AT", "VERSION", "POLICY", "HASH"
            );
            for r in rows {
                out.push_str(&format!(
                    "{:<6} {:<12} {:<8} {:<20} {:<64} {}\n",
                    r.seq,
                    r.at,
                    r.version_id,
                    r.policy_id,
                    r.hash,
                    r.previous_hash.as_deref().unwrap_or("-")
                ));
            }
            super::stdout::write(&out);
            Ok(())
        }
        PolicyCommand::DiffReport { limit, json, store } => {
            let store = open(&store).await?;
            let r = report(&store, limit).await?;
            if json {
                super::stdout::line(&serde_json::to_string_pretty(&r)?);
            } else {
                super::stdout::write(&table(&r));
            }
            Ok(())
        }
    }
}

/// The human form of the report.
pub fn table(r: &ShadowReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let Some(shadow) = &r.shadow_hash else {
        out.push_str("no shadow policy loaded (writ-broker policy shadow FILE)\n");
        return out;
    };
    let _ = writeln!(
        out,
        "shadow {} ({shadow}) against active {}",
        r.shadow_policy_id.as_deref().unwrap_or("-"),
        r.active_hash.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "{} host(s) would fail, {} would pass{}",
        r.would_fail,
        r.would_pass,
        if r.truncated {
            " (older rows left out)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<24} {:<16} {:<16} {:<12} SHADOW FAILURES",
        "HOST", "ACTIVE", "SHADOW", "AT"
    );
    for h in &r.hosts {
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<16} {:<12} {}",
            h.host_id,
            h.active_verdict,
            h.shadow_verdict,
            h.at,
            if h.shadow_rules.is_empty() {
                "-".to_owned()
            } else {
                h.shadow_rules.join(",")
            }
        );
    }
    out
}

fn run_learn(
    eventlog: Option<PathBuf>,
    ima: Option<PathBuf>,
    id: String,
    group: String,
    hosts: Vec<String>,
) -> ExitCode {
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

/// `policy sign FILE --key K [--out SIG]`.
fn sign(file: &std::path::Path, key: &std::path::Path, out: Option<PathBuf>) -> ExitCode {
    let fail = |code: u8, message: String| {
        eprintln!("writ-broker: policy sign: {message}");
        ExitCode::from(code)
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(2, format!("{}: {e}", file.display())),
    };
    let policy = match verifier_lib::policy::Policy::parse_toml(&text) {
        Ok(p) => p,
        Err(e) => return fail(1, format!("{}: {e}", file.display())),
    };
    let Some(version) = policy.version else {
        return fail(
            1,
            format!(
                "{}: a signed policy needs `version = N` (greater than the active one's)",
                file.display()
            ),
        );
    };
    let key = match private_file::read(key)
        .map_err(|e| e.to_string())
        .and_then(|pem| String::from_utf8(pem).map_err(|e| e.to_string()))
        .and_then(|pem| SigningKey::from_pkcs8_pem(&pem).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => return fail(2, format!("{}: {e}", key.display())),
    };
    let signature = match sign_policy(text.as_bytes(), &key) {
        Ok(s) => s,
        Err(e) => return fail(2, e.to_string()),
    };
    let out = out.unwrap_or_else(|| crate::policy::file::signature_path(file));
    if let Err(e) = std::fs::write(&out, &signature) {
        return fail(2, format!("{}: {e}", out.display()));
    }
    println!(
        "signed policy {} version {version} (sha256 {}) with key {}: {}",
        policy.id,
        policy.hash_hex(),
        key.kid(),
        out.display()
    );
    ExitCode::SUCCESS
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
