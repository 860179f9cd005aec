//! `writ-broker audit verify|show`: audit a log offline.
//!
//! Both print one JSON document. `verify` exits 0 when the log is
//! consistent, 1 when it is not (naming the first bad leaf index, or the
//! range that must hold it, and what is wrong), 2 when the input is unusable.
//! `show` verifies the log the same way first, then prints the leaves that
//! explain a host's or a token's history, in log order.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use verifier_lib::audit::{
    verify_log_rows, Checkpoint, Decision, Leaf, LogError, LogRow, MerkleTree,
};

use crate::audit::key_set::{verify_checkpoints, KeySet};
use crate::audit::source::{self, LogData, SourceError};

/// Where the log comes from, and which key must have signed it.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Broker base URL (downloads /v1/audit/*).
    #[arg(long, conflicts_with = "db", required_unless_present = "db")]
    pub url: Option<String>,
    /// A broker's store, read only: its SQLite database file, or its
    /// PostgreSQL URL (`postgres://USER@HOST/DB`).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Checkpoint verifier key file (signed-note vkey).
    #[arg(long, conflicts_with = "keys_dir")]
    pub vkey: Option<PathBuf>,
    /// The broker's keys directory (reads checkpoint-key.vkey).
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
    /// The checkpoint verifier keys to trust, one vkey per line (several
    /// brokers on one database each sign with their own key): every
    /// checkpoint must verify under the key its note names, from this set.
    /// Without it (and without --vkey/--keys-dir) the keys the store or
    /// broker publishes are used, which proves consistency, not authenticity.
    #[arg(long)]
    pub trusted_keys: Option<PathBuf>,
    /// Extra trusted CA (PEM) for --url over HTTPS.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// File holding an operator token for --url: the broker then serves
    /// the leaves themselves, not only their hashes.
    #[arg(long, requires = "url")]
    pub operator_token_file: Option<PathBuf>,
}

/// `writ-broker audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the tree, check every signed checkpoint and the consistency
    /// between successive ones, and (given a checkpoint saved earlier) that
    /// the log extends it. Exit 0 consistent, 1 not, 2 unusable input.
    Verify {
        #[command(flatten)]
        log: LogArgs,
        /// A checkpoint note saved earlier: the log must extend it.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// A file of token ids (cti, hex, one per line), e.g. every token a
        /// client received: each must have its mint leaf in the log (exit 1
        /// naming the missing ones). Needs the leaves (--db, or --url with
        /// --operator-token-file).
        #[arg(long)]
        expect_tokens: Option<PathBuf>,
    },
    /// Print the leaves about a host or a token, in log order (after
    /// verifying the log).
    Show {
        #[command(flatten)]
        log: LogArgs,
        /// Host id: its enrollments, nonces, appraisals, tokens, revocations.
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        host: Option<String>,
        /// Token cti (hex): the appraisal that allowed it, its host's
        /// enrollment, the policy in force, and any revocation.
        #[arg(long)]
        token: Option<String>,
    },
}

/// Runs an audit command and prints its JSON.
pub fn run(cmd: AuditCommand) -> ExitCode {
    let (out, code) = match cmd {
        AuditCommand::Verify {
            log,
            trusted_checkpoint,
            expect_tokens,
        } => verify_cmd(
            &log,
            trusted_checkpoint.as_deref(),
            expect_tokens.as_deref(),
        ),
        AuditCommand::Show { log, host, token } => show_cmd(&log, host, token),
    };
    super::stdout::line(&serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string()));
    ExitCode::from(code)
}

fn unusable(e: impl std::fmt::Display) -> (Value, u8) {
    (
        json!({ "ok": false, "error": "unusable_input", "message": e.to_string() }),
        2,
    )
}

/// Loaded log with the keys to check it against.
struct Loaded {
    data: LogData,
    keys: KeySet,
    key_source: &'static str,
}

/// What verify says when it trusts the keys its input published.
const PUBLISHED_KEYS_WARNING: &str = "the verifier keys were read from the log's own source: \
     they prove the checkpoints consistent with the log, not who signed them; \
     give --trusted-keys (or --vkey) with keys obtained out of band";

fn load(log: &LogArgs) -> Result<Loaded, SourceError> {
    let data = match (&log.url, &log.db) {
        (Some(url), _) => {
            let token = log
                .operator_token_file
                .as_deref()
                .map(|p| {
                    std::fs::read_to_string(p).map_err(|source| SourceError::File {
                        path: p.to_owned(),
                        source,
                    })
                })
                .transpose()?;
            source::from_url(url, log.ca_cert.as_deref(), token.as_deref().map(str::trim))?
        }
        (None, Some(db)) => source::from_db(db)?,
        (None, None) => {
            return Err(SourceError::Corrupt {
                what: "arguments: give --url or --db",
            })
        }
    };
    let given = source::vkey_from(log.vkey.as_deref(), log.keys_dir.as_deref())?;
    let trusted = log
        .trusted_keys
        .as_deref()
        .map(source::trusted_keys_from)
        .transpose()?;
    let (vkeys, key_source): (Vec<String>, &'static str) = match (trusted, given) {
        (Some(mut list), given) => {
            list.extend(given);
            (list, "trusted_keys")
        }
        (None, Some(k)) => (vec![k], "given"),
        // Trust on first use: say so in the output.
        (None, None) if !data.published_keys.is_empty() => (
            data.published_keys.clone(),
            if log.url.is_some() {
                "published_by_broker"
            } else {
                "published_in_store"
            },
        ),
        (None, None) => match &data.published_vkey {
            Some(k) => (vec![k.clone()], "published_by_broker"),
            None => {
                return Err(SourceError::Corrupt {
                    what: "arguments: the store publishes no checkpoint keys; give --trusted-keys, --vkey or --keys-dir",
                })
            }
        },
    };
    let keys =
        KeySet::parse(vkeys.iter().map(String::as_str)).map_err(|_| SourceError::Corrupt {
            what: "verifier keys: a key does not parse as a signed-note vkey",
        })?;
    if keys.is_empty() {
        return Err(SourceError::Corrupt {
            what: "verifier keys: none given",
        });
    }
    Ok(Loaded {
        data,
        keys,
        key_source,
    })
}

fn verify(loaded: &Loaded, trusted: Option<&str>) -> Result<Value, (Value, u8)> {
    let (tree, contents_checked) = if loaded.data.hashes_only {
        (hash_tree(loaded)?, false)
    } else {
        (row_tree(loaded)?, true)
    };
    match verify_checkpoints(&tree, &loaded.data.checkpoints, &loaded.keys, trusted) {
        Ok((report, uses)) => {
            let mut out = json!({
                "ok": true,
                "key_source": loaded.key_source,
                "keys": uses,
                "leaf_contents_checked": contents_checked,
                "report": report,
            });
            if let Some(obj) = out.as_object_mut() {
                // One key: as before several keys existed.
                if let [vkey] = loaded.keys.vkeys().as_slice() {
                    obj.insert("vkey".into(), json!(vkey));
                    obj.insert("vkey_source".into(), json!(loaded.key_source));
                } else {
                    obj.insert("vkeys".into(), json!(loaded.keys.vkeys()));
                }
                if loaded.key_source.starts_with("published") {
                    obj.insert("warning".into(), json!(PUBLISHED_KEYS_WARNING));
                }
            }
            Ok(out)
        }
        Err(e) => Err((describe(&e, &loaded.data.checkpoints), 1)),
    }
}

/// The tree of the stored rows, after checking each row: its index, its
/// stored hash and that its leaf decodes.
fn row_tree(loaded: &Loaded) -> Result<MerkleTree, (Value, u8)> {
    let rows: Vec<LogRow<'_>> = loaded
        .data
        .rows
        .iter()
        .map(|(index, leaf, stored)| LogRow {
            index: *index,
            leaf,
            stored_hash: *stored,
        })
        .collect();
    let any_key = loaded.keys.vkeys().into_iter().next().unwrap_or_default();
    // The row checks only: no checkpoints here (they are checked per key).
    match verify_log_rows(&rows, &[], &any_key, None) {
        Ok(_) => {}
        Err(LogError::VerifierKey(e)) => return Err(unusable(format!("verifier key: {e}"))),
        Err(e) => return Err((describe(&e, &loaded.data.checkpoints), 1)),
    }
    let hashes: Vec<_> = rows
        .iter()
        .map(|r| verifier_lib::audit::leaf_hash(r.leaf))
        .collect();
    Ok(MerkleTree::from_leaf_hashes(&hashes))
}

/// The public form of a log: leaf hashes only. Checkpoints, their roots and
/// their consistency are checked; what the leaves say is not.
fn hash_tree(loaded: &Loaded) -> Result<MerkleTree, (Value, u8)> {
    let mut hashes = Vec::with_capacity(loaded.data.rows.len());
    for (pos, (index, _, stored)) in loaded.data.rows.iter().enumerate() {
        let expected = u64::try_from(pos).unwrap_or(u64::MAX);
        if *index != expected {
            let e = LogError::IndexGap {
                expected,
                actual: *index,
            };
            return Err((describe(&e, &loaded.data.checkpoints), 1));
        }
        let Some(h) = stored else {
            return Err(unusable(format!(
                "entry {index}: leaf_hash is not 64 hex digits"
            )));
        };
        hashes.push(*h);
    }
    Ok(MerkleTree::from_leaf_hashes(&hashes))
}

fn verify_cmd(log: &LogArgs, trusted: Option<&Path>, expect_tokens: Option<&Path>) -> (Value, u8) {
    let loaded = match load(log) {
        Ok(l) => l,
        Err(e) => return unusable(e),
    };
    let trusted = match trusted.map(std::fs::read_to_string).transpose() {
        Ok(t) => t,
        Err(e) => return unusable(format!("trusted checkpoint: {e}")),
    };
    let mut out = match verify(&loaded, trusted.as_deref()) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(path) = expect_tokens else {
        return (out, 0);
    };
    let expected = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return unusable(format!("{}: {e}", path.display())),
    };
    let (tokens, missing) = match expected_tokens_in_log(&loaded, &expected) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let complete = missing == 0;
    if let Some(obj) = out.as_object_mut() {
        obj.insert("expected_tokens".into(), tokens);
        if !complete {
            obj.insert("ok".into(), json!(false));
            obj.insert("error".into(), json!("tokens_missing"));
        }
    }
    (out, if complete { 0 } else { 1 })
}

/// How many of the token ids listed in `expected` (hex, one per line) have
/// a mint leaf in the log, and the first missing ones; with the number
/// missing.
fn expected_tokens_in_log(loaded: &Loaded, expected: &str) -> Result<(Value, usize), (Value, u8)> {
    /// The most missing ids named in the output.
    const NAMED: usize = 20;
    if loaded.data.hashes_only {
        return Err(unusable(
            "the broker served leaf hashes only: --expect-tokens needs the leaves (--operator-token-file)",
        ));
    }
    let mut minted = std::collections::HashSet::new();
    for (index, bytes, _) in &loaded.data.rows {
        match Leaf::decode(bytes) {
            Ok(Leaf {
                decision: Decision::TokenMinted { cti, .. },
                ..
            }) => {
                minted.insert(cti);
            }
            Ok(_) => {}
            Err(e) => return Err(unusable(format!("leaf {index}: {e}"))),
        }
    }
    let listed: std::collections::BTreeSet<String> = expected
        .lines()
        .map(|l| l.trim().to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    let missing: Vec<&String> = listed.iter().filter(|c| !minted.contains(*c)).collect();
    let report = json!({
        "listed": listed.len(),
        "found": listed.len() - missing.len(),
        "missing_count": missing.len(),
        "missing": missing.iter().take(NAMED).collect::<Vec<_>>(),
    });
    Ok((report, missing.len()))
}

/// Size claimed by a checkpoint note, read without checking its signature
/// (for reporting only).
fn claimed_size(note: &str) -> Option<u64> {
    let text = note.get(..=note.rfind("\n\n")?)?;
    Checkpoint::parse_body(text).ok().map(|c| c.size)
}

/// Error kind, first bad index, suspect range, checkpoint position.
type Located<'a> = (&'a str, Option<u64>, Option<(u64, u64)>, Option<usize>);

/// The failure as JSON: a stable `error` kind, the first bad leaf index (or
/// the range `[from, to)` that must hold it), and the message.
fn describe(e: &LogError, checkpoints: &[String]) -> Value {
    let cp_size = |i: &usize| checkpoints.get(*i).and_then(|n| claimed_size(n));
    let (kind, index, range, checkpoint): Located<'_> = match e {
        LogError::IndexGap { expected, .. } => ("index_gap", Some(*expected), None, None),
        LogError::LeafHashMismatch { index, .. } => {
            ("leaf_hash_mismatch", Some(*index), None, None)
        }
        LogError::LeafUndecodable { index, .. } => ("leaf_undecodable", Some(*index), None, None),
        LogError::CheckpointInvalid { checkpoint, .. } => {
            ("checkpoint_invalid", None, None, Some(*checkpoint))
        }
        LogError::OriginMismatch { checkpoint, .. } => {
            ("origin_mismatch", None, None, Some(*checkpoint))
        }
        LogError::CheckpointsOutOfOrder { checkpoint, .. } => {
            ("checkpoints_out_of_order", None, None, Some(*checkpoint))
        }
        LogError::CheckpointBeyondLog {
            checkpoint,
            size,
            log_size,
        } => (
            "truncated",
            Some(*log_size),
            Some((*log_size, *size)),
            Some(*checkpoint),
        ),
        LogError::CheckpointRootMismatch {
            checkpoint,
            size,
            first_suspect,
        } => {
            let exact = size.saturating_sub(*first_suspect) == 1;
            (
                "checkpoint_root_mismatch",
                exact.then_some(*first_suspect),
                Some((*first_suspect, *size)),
                Some(*checkpoint),
            )
        }
        LogError::ConsistencyFailed { to, .. } => {
            ("checkpoints_inconsistent", None, None, Some(*to))
        }
        LogError::TrustedInvalid(_) => ("trusted_checkpoint_invalid", None, None, None),
        LogError::Truncated {
            trusted_size,
            actual,
        } => (
            "truncated",
            Some(*actual),
            Some((*actual, *trusted_size)),
            None,
        ),
        LogError::ForkDetected { size } => ("fork", None, Some((0, *size)), None),
        _ => ("log_invalid", None, None, None),
    };
    let mut v = json!({ "ok": false, "error": kind, "message": e.to_string() });
    if let Some(obj) = v.as_object_mut() {
        if let Some(i) = index {
            obj.insert("first_bad_index".into(), json!(i));
        }
        if let Some((a, b)) = range {
            obj.insert("suspect_range".into(), json!([a, b]));
        }
        if let Some(c) = checkpoint {
            obj.insert("checkpoint".into(), json!(c));
            if let Some(s) = cp_size(&c) {
                obj.insert("checkpoint_size".into(), json!(s));
            }
        }
    }
    v
}

fn show_cmd(log: &LogArgs, host: Option<String>, token: Option<String>) -> (Value, u8) {
    let loaded = match load(log) {
        Ok(l) => l,
        Err(e) => return unusable(e),
    };
    if loaded.data.hashes_only {
        return unusable(
            "the broker served leaf hashes only: show needs the leaves (--operator-token-file)",
        );
    }
    let report = match verify(&loaded, None) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut leaves: Vec<(u64, Leaf)> = Vec::with_capacity(loaded.data.rows.len());
    for (index, bytes, _) in &loaded.data.rows {
        match Leaf::decode(bytes) {
            Ok(l) => leaves.push((*index, l)),
            Err(e) => return unusable(format!("leaf {index}: {e}")),
        }
    }
    let selected = match (host, token) {
        (Some(h), _) => select_host(&leaves, &h),
        (None, Some(t)) => select_token(&leaves, &t.to_ascii_lowercase()),
        (None, None) => return unusable("give --host or --token"),
    };
    let found = !selected.is_empty();
    let entries: Vec<Value> = selected
        .into_iter()
        .filter_map(|i| leaves.get(i))
        .map(|(index, leaf)| json!({ "index": index, "leaf": leaf }))
        .collect();
    (
        json!({ "ok": true, "found": found, "log": report, "entries": entries }),
        if found { 0 } else { 1 },
    )
}

fn decision_host(d: &Decision) -> Option<&str> {
    match d {
        Decision::Enrollment { host, .. }
        | Decision::NonceIssued { host, .. }
        | Decision::Appraisal { host, .. }
        | Decision::HostRevoked { host, .. }
        | Decision::HostStateChanged { host, .. }
        | Decision::RequestKeyCertified { host, .. } => Some(host),
        Decision::TokenMinted { sub, .. } => Some(sub),
        _ => None,
    }
}

/// Positions of every leaf about `host`, with the policy activations in
/// between (the policy in force at each appraisal).
fn select_host(leaves: &[(u64, Leaf)], host: &str) -> Vec<usize> {
    let mine: Vec<usize> = (0..leaves.len())
        .filter(|i| leaves.get(*i).and_then(|(_, l)| decision_host(&l.decision)) == Some(host))
        .collect();
    let Some(first) = mine.first().copied() else {
        return Vec::new();
    };
    let last = mine.last().copied().unwrap_or(first);
    // The policy in force at the host's first leaf, then every change after.
    let before = (0..first).rev().find(|i| is_policy(leaves, *i));
    let mut out: Vec<usize> = before.into_iter().collect();
    out.extend((first..=last).filter(|i| mine.contains(i) || is_policy(leaves, *i)));
    out
}

fn is_policy(leaves: &[(u64, Leaf)], i: usize) -> bool {
    matches!(
        leaves.get(i).map(|(_, l)| &l.decision),
        Some(Decision::PolicyActivated { .. })
    )
}

/// The token's mint, the appraisal logged with it, the host's enrollment
/// before it, the policy in force, and any later decision that revoked it:
/// of the token or one of its ancestors, its host (revoked, failed, stale)
/// or its workload.
fn select_token(leaves: &[(u64, Leaf)], cti: &str) -> Vec<usize> {
    let Some(mint) = leaves
        .iter()
        .position(|(_, l)| matches!(&l.decision, Decision::TokenMinted { cti: c, .. } if c == cti))
    else {
        return Vec::new();
    };
    let Some((
        _,
        Leaf {
            decision: Decision::TokenMinted { sub, aud, .. },
            ..
        },
    )) = leaves.get(mint)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let appraisal = (0..mint).rev().find(|i| {
        matches!(leaves.get(*i).map(|(_, l)| &l.decision),
            Some(Decision::Appraisal { host, .. }) if host == sub)
    });
    let policy_hash = appraisal.and_then(|i| match leaves.get(i).map(|(_, l)| &l.decision) {
        Some(Decision::Appraisal { policy_hash, .. }) => Some(policy_hash.clone()),
        _ => None,
    });
    let enrollment = (0..mint).rev().find(|i| {
        matches!(leaves.get(*i).map(|(_, l)| &l.decision),
            Some(Decision::Enrollment { host, accepted: true, .. }) if host == sub)
    });
    let policy = (0..mint).rev().find(|i| {
        matches!(leaves.get(*i).map(|(_, l)| &l.decision),
            Some(Decision::PolicyActivated { policy_hash: h, .. }) if Some(h) == policy_hash.as_ref())
    });
    out.extend(policy);
    out.extend(enrollment);
    out.extend(appraisal);
    out.push(mint);
    // A derived token is revoked with any of its ancestors.
    let mut lineage = vec![cti.to_owned()];
    let mut parent = match leaves.get(mint).map(|(_, l)| &l.decision) {
        Some(Decision::TokenMinted { parent_cti, .. }) => parent_cti.clone(),
        _ => None,
    };
    while let Some(p) = parent.take() {
        if lineage.contains(&p) {
            break;
        }
        parent = leaves.iter().find_map(|(_, l)| match &l.decision {
            Decision::TokenMinted {
                cti: c, parent_cti, ..
            } if *c == p => parent_cti.clone(),
            _ => None,
        });
        lineage.push(p);
    }
    out.extend((mint + 1..leaves.len()).filter(
        |i| match leaves.get(*i).map(|(_, l)| &l.decision) {
            Some(Decision::TokenRevoked { cti: c, .. }) => lineage.contains(c),
            Some(Decision::HostRevoked { host, .. }) => host == sub,
            // Leaving `trusted` for `failed`/`stale` revokes the host's tokens.
            Some(Decision::HostStateChanged { host, to, .. }) => {
                host == sub && (to == "failed" || to == "stale")
            }
            Some(Decision::WorkloadRevoked { workload, .. }) => workload == aud,
            _ => false,
        },
    ));
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(cti: &str, parent: Option<&str>) -> Decision {
        Decision::TokenMinted {
            cti: cti.into(),
            sub: "h".into(),
            aud: "w".into(),
            exp: 100,
            parent_cti: parent.map(str::to_owned),
            token_digest: vec![0; 32],
        }
    }

    #[test]
    fn a_token_history_includes_revocations_of_its_ancestors_host_and_workload() {
        let decisions = [
            minted("aa", None),
            minted("bb", Some("aa")),
            minted("cc", Some("bb")),
            minted("dd", None),
            Decision::TokenRevoked {
                cti: "aa".into(),
                reason: "leaked".into(),
            },
            Decision::TokenRevoked {
                cti: "dd".into(),
                reason: "other".into(),
            },
            Decision::HostStateChanged {
                host: "h".into(),
                from: "trusted".into(),
                to: "stale".into(),
                reason: "late".into(),
            },
            Decision::HostStateChanged {
                host: "h".into(),
                from: "enrolled".into(),
                to: "trusted".into(),
                reason: "pass".into(),
            },
            Decision::WorkloadRevoked {
                workload: "w".into(),
                reason: "retired".into(),
            },
        ];
        let leaves: Vec<(u64, Leaf)> = decisions
            .into_iter()
            .enumerate()
            .map(|(i, d)| (i as u64, Leaf::new(1, d)))
            .collect();
        // cc: its mint, the root's revocation, the host going stale, the workload.
        assert_eq!(select_token(&leaves, "cc"), vec![2, 4, 6, 8]);
        // dd: not derived from aa.
        assert_eq!(select_token(&leaves, "dd"), vec![3, 5, 6, 8]);
        assert!(select_token(&leaves, "ee").is_empty());
    }
}
