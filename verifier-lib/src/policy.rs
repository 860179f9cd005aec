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
mod failure;
pub mod learn;
pub mod public;
pub mod rego;
pub mod signing;

pub use failure::{EvidenceStage, Failure, Warning};

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
    /// The group constrains no measurement (no `pcrs`, `boot`, `ima` or
    /// `[groups.snp]`): it would affirm any genuine quote.
    #[error("group {group} constrains no measurement (no pcrs, boot, ima, rego or snp rules); add rules, or set dangerous_accept_any_measurements = true to accept any genuine evidence")]
    NoMeasurementRules { group: String },
    /// The group's `[groups.snp]` sets no TCB minimum.
    #[error("group {group}: snp: no TCB floor (every min_*_tcb component unset or 0); set one, or dangerous_accept_any_tcb = true")]
    SnpNoTcbFloor { group: String },
    /// The group's `[groups.rego]` module was refused.
    #[error("group {group}: rego: {reason}")]
    Rego {
        group: String,
        reason: rego::RegoLoadError,
    },
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    id: String,
    /// Orders successive documents; required when policies are signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
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
    /// `[groups.rego]`: a Rego module judging the group's evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rego: Option<rego::RawRego>,
    /// Accept a group with no measurement rules (insecure).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    dangerous_accept_any_measurements: bool,
    /// Accept quotes signed with SHA-1 (insecure; recorded per appraisal).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    dangerous_accept_sha1_signatures: bool,
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
    /// `[groups.rego]`: a compiled Rego module, evaluated after the TOML
    /// rules on the same authenticated evidence.
    pub rego: Option<rego::RegoRules>,
    /// The group may have no TPM measurement rules: any genuine quote
    /// passes (insecure; refused at load unless set).
    pub dangerous_accept_any_measurements: bool,
    /// Quotes signed with SHA-1 (RSASSA-SHA1) are accepted; each appraisal
    /// that relies on one records a [`Warning`] (insecure: SHA-1
    /// signatures can be forged by chosen-prefix collisions).
    pub dangerous_accept_sha1_signatures: bool,
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
        if let Some(r) = &self.rego {
            pcrs.extend(r.quote_pcrs.iter().copied());
        }
        vec![(self.pcr_bank, pcrs.into_iter().collect())]
    }

    /// Whether the group constrains a TPM quote at all (`pcrs`, `boot`,
    /// `ima` or `rego`).
    pub fn has_tpm_measurement_rules(&self) -> bool {
        !self.pcrs.is_empty() || self.boot.is_some() || self.ima.is_some() || self.rego.is_some()
    }

    /// Whether appraisals of this group read the IMA list: it has
    /// `[groups.ima]` rules, or a Rego module that quotes PCR 10.
    pub fn appraises_ima(&self) -> bool {
        self.ima.is_some()
            || self
                .rego
                .as_ref()
                .is_some_and(|r| r.quote_pcrs.contains(&10))
    }

    /// Every PCR failure of `quoted` against this group. A group without
    /// TPM measurement rules refuses every quote unless it says
    /// `dangerous_accept_any_measurements`.
    pub fn appraise_pcrs(&self, quoted: &PcrMap) -> Vec<Failure> {
        if !self.has_tpm_measurement_rules() && !self.dangerous_accept_any_measurements {
            return vec![Failure::NoMeasurementRules {
                group: self.name.clone(),
            }];
        }
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
    /// `version = N`: signed policies must carry one, and a successor's
    /// must be greater ([`signing::check_succession`]).
    pub version: Option<u64>,
    /// The kid of the operator key whose signature was checked
    /// ([`signing::PolicySigners::check`]); `None`: taken unsigned.
    pub signer: Option<String>,
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
            let rego_rules = g
                .rego
                .as_ref()
                .map(|r| rego::RegoRules::load(&g.name, r))
                .transpose()?;
            let group = HostGroup {
                name: g.name,
                hosts: g.hosts,
                pcr_bank: g.pcr_bank,
                pcrs,
                snp: g.snp,
                boot: boot_rules,
                ima: ima_rules,
                rego: rego_rules,
                dangerous_accept_any_measurements: g.dangerous_accept_any_measurements,
                dangerous_accept_sha1_signatures: g.dangerous_accept_sha1_signatures,
            };
            check_measurement_rules(&group)?;
            groups.push(group);
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
            version: raw.version,
            signer: None,
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

/// A group must constrain what it affirms: TPM rules (`pcrs`, `boot`,
/// `ima`, `rego`) or an SEV-SNP table, unless it says
/// `dangerous_accept_any_measurements`; an SEV-SNP table needs a TCB floor
/// unless it says `dangerous_accept_any_tcb`.
fn check_measurement_rules(g: &HostGroup) -> Result<(), PolicyError> {
    if !g.has_tpm_measurement_rules() && g.snp.is_none() && !g.dangerous_accept_any_measurements {
        return Err(PolicyError::NoMeasurementRules {
            group: g.name.clone(),
        });
    }
    if let Some(snp) = &g.snp {
        if !snp.has_tcb_floor() && !snp.dangerous_accept_any_tcb {
            return Err(PolicyError::SnpNoTcbFloor {
                group: g.name.clone(),
            });
        }
    }
    Ok(())
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
mod tests;
