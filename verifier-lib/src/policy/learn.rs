//! Draft a policy from a golden host's logs: PCR references replayed from
//! the event log, `[groups.boot]` rules from its boot state and a
//! `[groups.ima]` allowlist from its IMA list. The draft is for an operator
//! to review and activate; nothing here activates anything.

use std::collections::{BTreeMap, BTreeSet};

use super::boot::{RawBootRules, RawCmdline, RawDigestRule, RawImaRules};
use super::{Policy, PolicyError, RawGroup, RawPolicy, RawTokens};
use crate::appraisal::boot_rules::{boot_apps, cmdlines, initrds, kernels};
use crate::crypto::HashAlg;
use crate::eventlog::{BootState, EventLog, EventLogError};
use crate::ima::{ImaError, ImaLog};

/// What to learn from.
#[derive(Debug, Clone, Default)]
pub struct LearnInput<'a> {
    /// Policy id of the draft.
    pub id: &'a str,
    /// Group name of the draft.
    pub group: &'a str,
    /// Host ids the group covers (empty: `*`).
    pub hosts: Vec<String>,
    pub eventlog: Option<&'a [u8]>,
    /// ASCII IMA list.
    pub ima: Option<&'a [u8]>,
}

/// Why a draft could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LearnError {
    #[error("nothing to learn from: give an event log, an IMA list or both")]
    NoInput,
    #[error("event log: {0}")]
    EventLog(#[from] EventLogError),
    #[error("IMA list: {0}")]
    Ima(#[from] ImaError),
    #[error("IMA list is not UTF-8 text")]
    ImaNotText,
    #[error("draft does not serialize: {message}")]
    Serialize { message: String },
    #[error("draft does not parse back: {0}")]
    Reparse(#[from] PolicyError),
}

fn digest_rule(components: &[crate::appraisal::boot_rules::BootComponent]) -> RawDigestRule {
    let allowed: BTreeSet<String> = components
        .iter()
        .filter_map(|c| c.digest.as_ref())
        .map(|d| hex::encode(&d.value))
        .collect();
    RawDigestRule {
        allowed: allowed.into_iter().collect(),
        forbidden: Vec::new(),
    }
}

/// Draft a policy TOML document. The draft parses with
/// [`Policy::parse_toml`] (checked before returning).
pub fn learn(input: &LearnInput<'_>) -> Result<String, LearnError> {
    if input.eventlog.is_none() && input.ima.is_none() {
        return Err(LearnError::NoInput);
    }
    let mut group = RawGroup {
        name: input.group.to_owned(),
        hosts: if input.hosts.is_empty() {
            vec!["*".into()]
        } else {
            input.hosts.clone()
        },
        pcr_bank: HashAlg::Sha256,
        pcrs: BTreeMap::new(),
        boot: None,
        ima: None,
        rego: None,
        snp: None,
        dangerous_accept_any_measurements: false,
        dangerous_accept_sha1_signatures: false,
    };
    if let Some(bytes) = input.eventlog {
        let log = EventLog::parse(bytes)?;
        let banks = log.banks();
        let bank = if banks.contains(&HashAlg::Sha256) {
            HashAlg::Sha256
        } else {
            banks.first().copied().unwrap_or(HashAlg::Sha1)
        };
        group.pcr_bank = bank;
        let replayed = log.replay();
        if let Some(values) = replayed.banks.get(&bank) {
            group.pcrs = values
                .iter()
                .map(|(pcr, v)| (pcr.to_string(), vec![hex::encode(v)]))
                .collect();
        }
        let state = BootState::from_log(&log);
        let lines: BTreeSet<String> = cmdlines(&state).into_iter().map(|(_, t)| t).collect();
        group.boot = Some(RawBootRules {
            secure_boot: state.secure_boot,
            quote_pcrs: None,
            dbx_required: Vec::new(),
            boot_apps: digest_rule(&boot_apps(&state)),
            kernels: digest_rule(&kernels(&state)),
            initrds: digest_rule(&initrds(&state)),
            cmdlines: lines.into_iter().map(RawCmdline::Exact).collect(),
        });
    }
    if let Some(bytes) = input.ima {
        let text = std::str::from_utf8(bytes).map_err(|_| LearnError::ImaNotText)?;
        let list = ImaLog::parse_ascii(text)?;
        let mut allow: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut violations = false;
        for e in &list.entries {
            if e.index == 0 && e.path == "boot_aggregate" {
                continue;
            }
            if e.violation {
                violations = true;
                continue;
            }
            if let Some((alg, d)) = &e.file_digest {
                allow
                    .entry(e.path.clone())
                    .or_default()
                    .insert(format!("{alg}:{}", hex::encode(d)));
            }
        }
        group.ima = Some(RawImaRules {
            exclude: Vec::new(),
            deny: Vec::new(),
            keys: Vec::new(),
            allow_violations: violations,
            boot_aggregate: input.eventlog.is_some(),
            allow: allow
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
        });
    }
    let raw = RawPolicy {
        id: input.id.to_owned(),
        version: None,
        groups: vec![group],
        workloads: Vec::new(),
        tokens: RawTokens::default(),
    };
    let body = toml::to_string(&raw).map_err(|e| LearnError::Serialize {
        message: e.to_string(),
    })?;
    let text = format!(
        "# Draft policy learned from a golden host's logs by `writ-broker policy learn`.\n\
         # Review every value before activating it: the logs are trusted as given.\n{body}"
    );
    Policy::parse_toml(&text)?;
    Ok(text)
}
