//! Appraisal policy, version 0: host groups with reference PCR values, the
//! workloads each group may run, and token lifetimes.
//!
//! A policy is a TOML document. It is identified by its `id` and by the
//! SHA-256 of its exact bytes, and both are recorded with every appraisal and
//! every token. Parsing validates everything up front (PCR indexes, digest
//! lengths, lifetimes) so that appraisal itself cannot fail on a bad policy.
//!
//! ```toml
//! id = "lab-2026-11"
//!
//! [[groups]]
//! name = "default"
//! hosts = ["*"]            # host ids, or "*" for any enrolled host
//! pcr_bank = "sha256"
//! [groups.pcrs]
//! 0 = ["<hex>"]            # allowed values of PCR 0 (any one of them)
//! 7 = ["<hex>", "<hex>"]
//!
//! [[workloads]]
//! name = "hello"
//! digests = ["<sha256 hex of the executable>"]
//! groups = ["default"]     # empty or absent: every group
//! lifetime_secs = 300
//! allow_offline = false    # true: relying parties may accept its tokens
//!                          # without a fresh status list (until exp)
//!
//! [tokens]
//! default_lifetime_secs = 300
//! max_lifetime_secs = 900
//! ```

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::HashAlg;

pub mod boot;
pub mod learn;

/// Hard ceiling for any token lifetime, whatever a policy says (15 minutes).
pub const HARD_MAX_TOKEN_LIFETIME_SECS: u32 = 900;

/// PCR values per bank, as quoted and verified.
pub type PcrMap = BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>;

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A group's `[groups.snp]` policy is not acceptable.
    #[error("group {group}: [groups.snp]: {reason}")]
    Snp {
        group: String,
        reason: crate::snp::SnpPolicyError,
    },
    #[error("policy is not valid TOML for the v0 schema: {message}")]
    Syntax { message: String },
    #[error("policy id must be non-empty")]
    EmptyId,
    #[error("group {group}: PCR index {index:?} is not a number from 0 to 23")]
    BadPcrIndex { group: String, index: String },
    #[error("group {group}: PCR {pcr} value {value:?} is not {expected_len} bytes of hex")]
    BadPcrValue {
        group: String,
        pcr: u8,
        value: String,
        expected_len: usize,
    },
    #[error("group {group}: PCR {pcr} lists no allowed value")]
    EmptyPcrValues { group: String, pcr: u8 },
    #[error("workload {workload}: digest {value:?} is not 32 bytes of hex")]
    BadWorkloadDigest { workload: String, value: String },
    #[error("workload {workload}: names unknown group {group}")]
    UnknownGroup { workload: String, group: String },
    #[error("duplicate {what} name {name}")]
    Duplicate { what: &'static str, name: String },
    #[error("{field} is {actual} s, above the maximum {max} s")]
    LifetimeTooLong {
        field: String,
        max: u32,
        actual: u32,
    },
    #[error("{field} must be at least 1 s")]
    LifetimeZero { field: String },
    #[error(
        "group {group}: {field}: {value:?} is not a digest (alg:hex or hex of a SHA-1/2 length)"
    )]
    BadDigest {
        group: String,
        field: String,
        value: String,
    },
    #[error("group {group}: ima.keys: {reason}")]
    BadImaKey { group: String, reason: String },
}

/// Which check rejected evidence before the policy looked at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvidenceStage {
    /// The host's stored attestation key could not be parsed.
    AkPublic,
    /// The quote (signature, nonce, PCR digest).
    Quote,
    /// The TCG event log (parse or replay).
    Eventlog,
    /// The IMA measurement list.
    Ima,
    /// The SEV-SNP evidence bundle (certificates, fetch).
    SnpEvidence,
    /// The SEV-SNP report (chain, signature, REPORT_DATA).
    SnpReport,
    /// The SEV-SNP report does not identify the claimed host.
    SnpHost,
}

impl EvidenceStage {
    /// The stage's stable name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceStage::AkPublic => "ak_public",
            EvidenceStage::Quote => "quote",
            EvidenceStage::Eventlog => "eventlog",
            EvidenceStage::Ima => "ima",
            EvidenceStage::SnpEvidence => "snp_evidence",
            EvidenceStage::SnpReport => "snp_report",
            EvidenceStage::SnpHost => "snp_host",
        }
    }
}

impl std::fmt::Display for EvidenceStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One way a host's evidence or request failed the policy. An appraisal
/// reports every failure, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    /// No host group of the policy covers this host.
    NoGroupForHost { host: String },
    /// The quote does not contain a PCR the policy constrains.
    PcrMissing { bank: HashAlg, pcr: u8 },
    /// A PCR holds a value the policy does not allow.
    PcrNotAllowed {
        bank: HashAlg,
        pcr: u8,
        actual: String,
        allowed: Vec<String>,
    },
    /// The workload name is not in the policy (or not for this host's group).
    WorkloadUnknown { workload: String, group: String },
    /// The workload's digest is not one the policy allows.
    WorkloadDigestNotAllowed {
        workload: String,
        actual: String,
        allowed: Vec<String>,
    },
    /// The evidence itself was rejected before policy (signature, nonce, chain…).
    EvidenceRejected {
        stage: EvidenceStage,
        reason: String,
    },
    /// The host's group has no `[groups.snp]` policy: SNP evidence is refused.
    SnpPolicyMissing { group: String },
    /// A verified SEV-SNP report broke a rule of the group's SNP policy.
    SnpPolicyViolated {
        snp_rule: crate::snp::SnpRule,
        expected: String,
        actual: String,
    },
    /// The group's policy needs a log (`eventlog` or `ima`) the host did not send.
    LogMissing { log: String },
    /// Replaying the event log does not give the quoted value of this PCR.
    EventLogPcrMismatch {
        bank: HashAlg,
        pcr: u8,
        replayed: Option<String>,
        quoted: String,
    },
    /// The event log extends a PCR the quote does not cover, so its events
    /// cannot be checked.
    EventLogPcrNotQuoted { pcr: u8, event_index: usize },
    /// The Secure Boot state is not the required one (`actual: None`: the log
    /// does not measure the `SecureBoot` variable).
    SecureBootNotAllowed {
        expected: bool,
        actual: Option<bool>,
        event_index: Option<usize>,
    },
    /// A boot component (`kind`: `boot_app`, `kernel`, `initrd`) whose digest
    /// is not in the allowed list.
    BootDigestNotAllowed {
        kind: String,
        event_index: usize,
        digest: String,
        name: Option<String>,
    },
    /// A boot component whose digest is forbidden.
    BootDigestForbidden {
        kind: String,
        event_index: usize,
        digest: String,
        name: Option<String>,
    },
    /// A kernel command line matching no rule (`cmdline: None`: none measured).
    CmdlineNotAllowed {
        event_index: Option<usize>,
        cmdline: Option<String>,
    },
    /// A required dbx entry is absent (`event_index` of the dbx measurement, if any).
    DbxEntryMissing {
        entry: String,
        event_index: Option<usize>,
    },
    /// PCR 10 replayed over the IMA entries `[entries_from, entries_to)` from
    /// the stored cursor differs from the quoted value.
    ImaPcrMismatch {
        bank: HashAlg,
        replayed: String,
        quoted: String,
        entries_from: u64,
        entries_to: u64,
    },
    /// The IMA list does not continue the stored cursor and the TPM did not
    /// reset or restart since (same boot): the list shrank or was rewritten.
    ImaContinuityBroken { cursor_entries: u64, reason: String },
    /// An IMA entry whose digest is on the deny list.
    ImaEntryDenied {
        entry_index: u64,
        path: String,
        digest: String,
    },
    /// An IMA entry neither allowed, excluded nor validly signed.
    ImaEntryNotAllowed {
        entry_index: u64,
        path: String,
        digest: Option<String>,
        reason: String,
    },
    /// An IMA violation entry (time-of-measure/time-of-use or open-writers).
    ImaViolation { entry_index: u64, path: String },
    /// The boot_aggregate entry does not match the event log's PCRs.
    ImaBootAggregateMismatch { entry_index: u64, reason: String },
    /// The TPM clock went backwards within one boot (replayed or rolled-back state).
    TpmClockRollback {
        previous: u64,
        current: u64,
        reset_count: u64,
    },
    /// A TPM counter (`reset_count` or `restart_count`) decreased.
    TpmCounterRollback {
        counter: String,
        previous: u64,
        current: u64,
    },
    /// The host rebooted and the policy requires a new boot log, which was absent.
    RebootWithoutBootLog {
        previous_reset_count: u64,
        current_reset_count: u64,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoGroupForHost { host } => write!(f, "no policy group covers host {host}"),
            Failure::PcrMissing { bank, pcr } => {
                write!(f, "PCR {pcr} ({bank}) missing from the quote")
            }
            Failure::PcrNotAllowed {
                bank, pcr, actual, ..
            } => {
                write!(f, "PCR {pcr} ({bank}) = {actual} is not an allowed value")
            }
            Failure::WorkloadUnknown { workload, group } => {
                write!(f, "workload {workload} is not allowed for group {group}")
            }
            Failure::WorkloadDigestNotAllowed {
                workload, actual, ..
            } => {
                write!(f, "workload {workload} digest {actual} is not allowed")
            }
            Failure::EvidenceRejected { stage, reason } => write!(f, "{stage}: {reason}"),
            Failure::SnpPolicyMissing { group } => {
                write!(f, "group {group} has no SEV-SNP policy")
            }
            Failure::SnpPolicyViolated {
                snp_rule,
                expected,
                actual,
            } => write!(
                f,
                "SEV-SNP rule {snp_rule:?}: expected {expected}, got {actual}"
            ),
            Failure::LogMissing { log } => write!(f, "policy requires the {log} log"),
            Failure::EventLogPcrMismatch {
                bank,
                pcr,
                replayed,
                quoted,
            } => write!(
                f,
                "event log replay of PCR {pcr} ({bank}) = {} differs from quoted {quoted}",
                replayed.as_deref().unwrap_or("(no digests in this bank)")
            ),
            Failure::EventLogPcrNotQuoted { pcr, event_index } => write!(
                f,
                "event {event_index} extends PCR {pcr}, which the quote does not cover"
            ),
            Failure::SecureBootNotAllowed {
                expected, actual, ..
            } => write!(
                f,
                "Secure Boot is {}, policy requires {}",
                match actual {
                    Some(true) => "enabled",
                    Some(false) => "disabled",
                    None => "not measured",
                },
                if *expected { "enabled" } else { "disabled" }
            ),
            Failure::BootDigestNotAllowed {
                kind,
                event_index,
                digest,
                ..
            } => write!(
                f,
                "{kind} {digest} (event {event_index}) is not an allowed digest"
            ),
            Failure::BootDigestForbidden {
                kind,
                event_index,
                digest,
                ..
            } => write!(f, "{kind} {digest} (event {event_index}) is forbidden"),
            Failure::CmdlineNotAllowed {
                event_index,
                cmdline,
            } => match (event_index, cmdline) {
                (Some(i), Some(c)) => {
                    write!(f, "kernel command line {c:?} (event {i}) is not allowed")
                }
                _ => write!(f, "no kernel command line measured; policy requires one"),
            },
            Failure::DbxEntryMissing { entry, .. } => {
                write!(f, "required dbx entry {entry} is missing")
            }
            Failure::ImaPcrMismatch {
                bank,
                replayed,
                quoted,
                entries_from,
                entries_to,
            } => write!(
                f,
                "IMA entries {entries_from}..{entries_to} replay PCR 10 ({bank}) to {replayed}, quoted {quoted}"
            ),
            Failure::ImaContinuityBroken {
                cursor_entries,
                reason,
            } => write!(
                f,
                "IMA list does not continue the {cursor_entries} entries already appraised in this boot: {reason}"
            ),
            Failure::ImaEntryDenied {
                entry_index,
                path,
                digest,
            } => write!(f, "IMA entry {entry_index} {path} has denied digest {digest}"),
            Failure::ImaEntryNotAllowed {
                entry_index,
                path,
                reason,
                ..
            } => write!(f, "IMA entry {entry_index} {path} is not allowed: {reason}"),
            Failure::ImaViolation { entry_index, path } => {
                write!(f, "IMA entry {entry_index} {path} is a measurement violation")
            }
            Failure::ImaBootAggregateMismatch {
                entry_index,
                reason,
            } => write!(f, "IMA boot_aggregate (entry {entry_index}): {reason}"),
            Failure::TpmClockRollback {
                previous, current, ..
            } => write!(
                f,
                "TPM clock went backwards within one boot ({previous} -> {current} ms)"
            ),
            Failure::TpmCounterRollback {
                counter,
                previous,
                current,
            } => write!(f, "TPM {counter} decreased ({previous} -> {current})"),
            Failure::RebootWithoutBootLog {
                previous_reset_count,
                current_reset_count,
            } => write!(
                f,
                "host rebooted (reset count {previous_reset_count} -> {current_reset_count}) without a new boot log"
            ),
        }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    id: String,
    #[serde(default)]
    groups: Vec<RawGroup>,
    #[serde(default)]
    workloads: Vec<RawWorkload>,
    #[serde(default)]
    tokens: RawTokens,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default = "default_bank")]
    pcr_bank: HashAlg,
    #[serde(default)]
    pcrs: BTreeMap<String, Vec<String>>,
    /// `[groups.snp]`: SEV-SNP appraisal policy for this group's SNP hosts.
    #[serde(default)]
    snp: Option<crate::snp::SnpPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot: Option<boot::RawBootRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ima: Option<boot::RawImaRules>,
}

fn default_bank() -> HashAlg {
    HashAlg::Sha256
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: String,
    digests: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    lifetime_secs: Option<u32>,
    #[serde(default)]
    allow_offline: bool,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    #[serde(default = "default_lifetime")]
    default_lifetime_secs: u32,
    #[serde(default = "hard_max")]
    max_lifetime_secs: u32,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            default_lifetime_secs: default_lifetime(),
            max_lifetime_secs: hard_max(),
        }
    }
}

fn default_lifetime() -> u32 {
    300
}
fn hard_max() -> u32 {
    HARD_MAX_TOKEN_LIFETIME_SECS
}

/// A host group: which hosts, and which PCR values they must show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostGroup {
    pub name: String,
    /// Host ids, or `*` for every host.
    pub hosts: Vec<String>,
    pub pcr_bank: HashAlg,
    /// PCR index → allowed values.
    pub pcrs: BTreeMap<u8, BTreeSet<Vec<u8>>>,
    /// SEV-SNP policy (`[groups.snp]`); `None`: SNP evidence is refused.
    pub snp: Option<crate::snp::SnpPolicy>,
    /// `[groups.boot]`: measured-boot rules; the event log is required.
    pub boot: Option<boot::BootRules>,
    /// `[groups.ima]`: IMA rules; the IMA list is required.
    pub ima: Option<boot::ImaRules>,
}

impl HostGroup {
    /// Whether this group covers `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == "*" || h == host)
    }

    /// The PCR selection an attester must quote for this group.
    pub fn pcr_selection(&self) -> Vec<(HashAlg, Vec<u8>)> {
        let mut pcrs: BTreeSet<u8> = self.pcrs.keys().copied().collect();
        if let Some(b) = &self.boot {
            pcrs.extend(b.quote_pcrs.iter().copied());
        }
        if self.ima.is_some() {
            pcrs.insert(10);
        }
        vec![(self.pcr_bank, pcrs.into_iter().collect())]
    }

    /// Every PCR failure of `quoted` against this group.
    pub fn appraise_pcrs(&self, quoted: &PcrMap) -> Vec<Failure> {
        let bank = quoted.get(&self.pcr_bank);
        self.pcrs
            .iter()
            .filter_map(|(&pcr, allowed)| match bank.and_then(|b| b.get(&pcr)) {
                None => Some(Failure::PcrMissing {
                    bank: self.pcr_bank,
                    pcr,
                }),
                Some(v) if allowed.contains(v) => None,
                Some(v) => Some(Failure::PcrNotAllowed {
                    bank: self.pcr_bank,
                    pcr,
                    actual: hex::encode(v),
                    allowed: allowed.iter().map(hex::encode).collect(),
                }),
            })
            .collect()
    }
}

/// A workload hosts may run, with the executables allowed for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadRule {
    pub name: String,
    pub digests: BTreeSet<[u8; 32]>,
    /// Groups allowed to run it; empty means every group.
    pub groups: Vec<String>,
    pub lifetime_secs: u32,
    /// Its tokens say relying parties may accept them while they cannot get
    /// a fresh revocation status list (`writ.offline-ok`, until `exp`).
    pub allow_offline: bool,
}

/// A parsed, validated policy with its identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    pub id: String,
    /// SHA-256 of the exact document bytes.
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
    pub groups: Vec<HostGroup>,
    pub workloads: Vec<WorkloadRule>,
    pub default_lifetime_secs: u32,
    pub max_lifetime_secs: u32,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

impl Policy {
    /// Parse and validate a v0 policy document.
    pub fn parse_toml(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            message: e.to_string(),
        })?;
        let hash = HashAlg::Sha256.digest(text.as_bytes());
        Self::from_raw(raw, hash)
    }

    fn from_raw(raw: RawPolicy, hash: Vec<u8>) -> Result<Policy, PolicyError> {
        if raw.id.trim().is_empty() {
            return Err(PolicyError::EmptyId);
        }
        let max = raw.tokens.max_lifetime_secs;
        check_lifetime(
            "tokens.max_lifetime_secs",
            max,
            HARD_MAX_TOKEN_LIFETIME_SECS,
        )?;
        check_lifetime(
            "tokens.default_lifetime_secs",
            raw.tokens.default_lifetime_secs,
            max,
        )?;

        let mut names = BTreeSet::new();
        let mut groups = Vec::with_capacity(raw.groups.len());
        for g in raw.groups {
            if !names.insert(g.name.clone()) {
                return Err(PolicyError::Duplicate {
                    what: "group",
                    name: g.name,
                });
            }
            let mut pcrs = BTreeMap::new();
            for (index, values) in g.pcrs {
                let pcr = index
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 23)
                    .ok_or_else(|| PolicyError::BadPcrIndex {
                        group: g.name.clone(),
                        index: index.clone(),
                    })?;
                if values.is_empty() {
                    return Err(PolicyError::EmptyPcrValues {
                        group: g.name.clone(),
                        pcr,
                    });
                }
                let mut allowed = BTreeSet::new();
                for value in values {
                    let bytes = hex::decode(value.trim())
                        .ok()
                        .filter(|b| b.len() == g.pcr_bank.output_len())
                        .ok_or_else(|| PolicyError::BadPcrValue {
                            group: g.name.clone(),
                            pcr,
                            value: value.clone(),
                            expected_len: g.pcr_bank.output_len(),
                        })?;
                    allowed.insert(bytes);
                }
                pcrs.insert(pcr, allowed);
            }
            if let Some(snp) = &g.snp {
                snp.check_host_data_rule()
                    .map_err(|reason| PolicyError::Snp {
                        group: g.name.clone(),
                        reason,
                    })?;
            }
            let boot_rules = g
                .boot
                .as_ref()
                .map(|b| boot::boot_rules(&g.name, b))
                .transpose()?;
            let ima_rules = g
                .ima
                .as_ref()
                .map(|i| boot::ima_rules(&g.name, i))
                .transpose()?;
            groups.push(HostGroup {
                name: g.name,
                hosts: g.hosts,
                pcr_bank: g.pcr_bank,
                pcrs,
                snp: g.snp,
                boot: boot_rules,
                ima: ima_rules,
            });
        }

        let mut wnames = BTreeSet::new();
        let mut workloads = Vec::with_capacity(raw.workloads.len());
        for w in raw.workloads {
            if !wnames.insert(w.name.clone()) {
                return Err(PolicyError::Duplicate {
                    what: "workload",
                    name: w.name,
                });
            }
            for g in &w.groups {
                if !names.contains(g) {
                    return Err(PolicyError::UnknownGroup {
                        workload: w.name.clone(),
                        group: g.clone(),
                    });
                }
            }
            let mut digests = BTreeSet::new();
            for d in &w.digests {
                let arr: [u8; 32] = hex::decode(d.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| PolicyError::BadWorkloadDigest {
                        workload: w.name.clone(),
                        value: d.clone(),
                    })?;
                digests.insert(arr);
            }
            let lifetime = w.lifetime_secs.unwrap_or(raw.tokens.default_lifetime_secs);
            check_lifetime(
                &format!("workloads.{}.lifetime_secs", w.name),
                lifetime,
                max,
            )?;
            workloads.push(WorkloadRule {
                name: w.name,
                digests,
                groups: w.groups,
                lifetime_secs: lifetime,
                allow_offline: w.allow_offline,
            });
        }

        Ok(Policy {
            id: raw.id,
            hash,
            groups,
            workloads,
            default_lifetime_secs: raw.tokens.default_lifetime_secs,
            max_lifetime_secs: max,
        })
    }

    /// The first group covering `host` (groups are tried in document order).
    pub fn group_for(&self, host: &str) -> Result<&HostGroup, Failure> {
        self.groups
            .iter()
            .find(|g| g.covers(host))
            .ok_or_else(|| Failure::NoGroupForHost {
                host: host.to_owned(),
            })
    }

    /// Check that `group` may run `workload` with this executable digest.
    pub fn check_workload(
        &self,
        group: &HostGroup,
        workload: &str,
        digest: &[u8],
    ) -> Result<&WorkloadRule, Failure> {
        let rule = self
            .workloads
            .iter()
            .find(|w| w.name == workload && (w.groups.is_empty() || w.groups.contains(&group.name)))
            .ok_or_else(|| Failure::WorkloadUnknown {
                workload: workload.to_owned(),
                group: group.name.clone(),
            })?;
        if rule.digests.iter().any(|d| d.as_slice() == digest) {
            Ok(rule)
        } else {
            Err(Failure::WorkloadDigestNotAllowed {
                workload: workload.to_owned(),
                actual: hex::encode(digest),
                allowed: rule.digests.iter().map(hex::encode).collect(),
            })
        }
    }

    /// Policy hash as lower-case hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(&self.hash)
    }
}

fn check_lifetime(field: &str, actual: u32, max: u32) -> Result<(), PolicyError> {
    if actual == 0 {
        return Err(PolicyError::LifetimeZero {
            field: field.to_owned(),
        });
    }
    if actual > max {
        return Err(PolicyError::LifetimeTooLong {
            field: field.to_owned(),
            max,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(n: u8) -> String {
        hex::encode([n; 32])
    }

    fn doc() -> String {
        format!(
            r#"
id = "t1"
[[groups]]
name = "g"
hosts = ["*"]
[groups.pcrs]
0 = ["{a}"]
7 = ["{a}", "{b}"]

[[workloads]]
name = "hello"
digests = ["{c}"]
"#,
            a = z(1),
            b = z(2),
            c = z(3)
        )
    }

    #[test]
    fn parses_and_appraises_every_failure() {
        let p = Policy::parse_toml(&doc()).unwrap();
        assert_eq!(p.id, "t1");
        assert_eq!(p.hash, HashAlg::Sha256.digest(doc().as_bytes()));
        let g = p.group_for("any-host").unwrap();
        assert_eq!(g.pcr_selection(), vec![(HashAlg::Sha256, vec![0, 7])]);

        let mut quoted = PcrMap::new();
        quoted
            .entry(HashAlg::Sha256)
            .or_default()
            .insert(0, vec![1; 32]);
        quoted
            .entry(HashAlg::Sha256)
            .or_default()
            .insert(7, vec![2; 32]);
        assert!(g.appraise_pcrs(&quoted).is_empty());

        quoted
            .entry(HashAlg::Sha256)
            .or_default()
            .insert(0, vec![9; 32]);
        quoted.entry(HashAlg::Sha256).or_default().remove(&7);
        let f = g.appraise_pcrs(&quoted);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(matches!(f[0], Failure::PcrNotAllowed { pcr: 0, .. }));
        assert_eq!(
            f[1],
            Failure::PcrMissing {
                bank: HashAlg::Sha256,
                pcr: 7
            }
        );
    }

    #[test]
    fn workload_rules() {
        let p = Policy::parse_toml(&doc()).unwrap();
        let g = p.group_for("h").unwrap();
        assert_eq!(
            p.check_workload(g, "hello", &[3; 32])
                .unwrap()
                .lifetime_secs,
            300
        );
        assert!(matches!(
            p.check_workload(g, "hello", &[4; 32]),
            Err(Failure::WorkloadDigestNotAllowed { .. })
        ));
        assert!(matches!(
            p.check_workload(g, "other", &[3; 32]),
            Err(Failure::WorkloadUnknown { .. })
        ));
    }

    #[test]
    fn rejects_bad_documents() {
        let bad_len = doc().replace(&z(1), "abcd");
        assert!(matches!(
            Policy::parse_toml(&bad_len),
            Err(PolicyError::BadPcrValue { pcr: 0, .. })
        ));
        let bad_idx = doc().replace("7 = [", "24 = [");
        assert!(matches!(
            Policy::parse_toml(&bad_idx),
            Err(PolicyError::BadPcrIndex { .. })
        ));
        let long = format!("{}\n[tokens]\nmax_lifetime_secs = 901\n", doc());
        assert!(matches!(
            Policy::parse_toml(&long),
            Err(PolicyError::LifetimeTooLong {
                max: 900,
                actual: 901,
                ..
            })
        ));
        let unknown = format!("{}\nsurprise = 1\n", doc());
        assert!(matches!(
            Policy::parse_toml(&unknown),
            Err(PolicyError::Syntax { .. })
        ));
        let dup = format!("{}\n[[workloads]]\nname = \"hello\"\ndigests = []\n", doc());
        assert!(matches!(
            Policy::parse_toml(&dup),
            Err(PolicyError::Duplicate {
                what: "workload",
                ..
            })
        ));
        assert_eq!(Policy::parse_toml("id = \"\""), Err(PolicyError::EmptyId));
    }

    #[test]
    fn no_group_is_a_failure() {
        let p = Policy::parse_toml(&doc().replace("[\"*\"]", "[\"only-this\"]")).unwrap();
        assert_eq!(
            p.group_for("other").unwrap_err(),
            Failure::NoGroupForHost {
                host: "other".into()
            }
        );
        assert!(p.group_for("only-this").is_ok());
    }
}
