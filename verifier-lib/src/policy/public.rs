//! What a client is told of a failed rule: [`PublicFailure`], the rule that
//! failed and what the client's own evidence or request showed, never what
//! the policy allows (allowed PCR values, expected digests, required dbx
//! entries, SEV-SNP expectations) and never the policy's internal names
//! (groups). The full [`Failure`] goes to the broker's log and the audit
//! leaf (issue #12, finding 6).

use serde::{Deserialize, Serialize};

use super::{EvidenceStage, Failure};
use crate::crypto::HashAlg;

/// A [`Failure`] as a client sees it. The `rule` tag is the same as the
/// full failure's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PublicFailure {
    NoGroupForHost,
    PcrMissing {
        bank: HashAlg,
        pcr: u8,
    },
    /// The quoted value (the host's own); not the allowed ones.
    PcrNotAllowed {
        bank: HashAlg,
        pcr: u8,
        actual: String,
    },
    WorkloadUnknown {
        workload: String,
    },
    /// The requested digest; not the allowed ones.
    WorkloadDigestNotAllowed {
        workload: String,
        actual: String,
    },
    EvidenceRejected {
        stage: EvidenceStage,
        reason: String,
    },
    SnpPolicyMissing,
    /// The report's value; not what the policy expects.
    SnpPolicyViolated {
        snp_rule: crate::snp::SnpRule,
        actual: String,
    },
    LogMissing {
        log: String,
    },
    EventLogPcrMismatch {
        bank: HashAlg,
        pcr: u8,
        replayed: Option<String>,
        quoted: String,
    },
    EventLogPcrNotQuoted {
        pcr: u8,
        event_index: usize,
    },
    SecureBootNotAllowed {
        actual: Option<bool>,
        event_index: Option<usize>,
    },
    BootDigestNotAllowed {
        kind: String,
        event_index: usize,
        digest: String,
        name: Option<String>,
    },
    BootDigestForbidden {
        kind: String,
        event_index: usize,
        digest: String,
        name: Option<String>,
    },
    CmdlineNotAllowed {
        event_index: Option<usize>,
        cmdline: Option<String>,
    },
    /// Which dbx entry is required is the policy's.
    DbxEntryMissing {
        event_index: Option<usize>,
    },
    ImaPcrMismatch {
        bank: HashAlg,
        replayed: String,
        quoted: String,
        entries_from: u64,
        entries_to: u64,
    },
    ImaContinuityBroken {
        cursor_entries: u64,
        reason: String,
    },
    ImaEntryDenied {
        entry_index: u64,
        path: String,
        digest: String,
    },
    ImaEntryNotAllowed {
        entry_index: u64,
        path: String,
        digest: Option<String>,
        reason: String,
    },
    ImaViolation {
        entry_index: u64,
        path: String,
    },
    ImaBootAggregateMismatch {
        entry_index: u64,
        reason: String,
    },
    TpmClockRollback {
        previous: u64,
        current: u64,
        reset_count: u64,
    },
    TpmCounterRollback {
        counter: String,
        previous: u64,
        current: u64,
    },
    RebootWithoutBootLog {
        previous_reset_count: u64,
        current_reset_count: u64,
    },
    NoMeasurementRules,
    /// The group's Rego rules denied the evidence. The reason is the policy
    /// author's text (it may name allowed values): operators only.
    RegoDenied,
    /// The group's Rego rules gave no verdict.
    RegoError,
}

impl From<&Failure> for PublicFailure {
    fn from(f: &Failure) -> Self {
        match f.clone() {
            Failure::NoGroupForHost { .. } => Self::NoGroupForHost,
            Failure::PcrMissing { bank, pcr } => Self::PcrMissing { bank, pcr },
            Failure::PcrNotAllowed {
                bank, pcr, actual, ..
            } => Self::PcrNotAllowed { bank, pcr, actual },
            Failure::WorkloadUnknown { workload, .. } => Self::WorkloadUnknown { workload },
            Failure::WorkloadDigestNotAllowed {
                workload, actual, ..
            } => Self::WorkloadDigestNotAllowed { workload, actual },
            Failure::EvidenceRejected { stage, reason } => Self::EvidenceRejected { stage, reason },
            Failure::SnpPolicyMissing { .. } => Self::SnpPolicyMissing,
            Failure::SnpPolicyViolated {
                snp_rule, actual, ..
            } => Self::SnpPolicyViolated { snp_rule, actual },
            Failure::LogMissing { log } => Self::LogMissing { log },
            Failure::EventLogPcrMismatch {
                bank,
                pcr,
                replayed,
                quoted,
            } => Self::EventLogPcrMismatch {
                bank,
                pcr,
                replayed,
                quoted,
            },
            Failure::EventLogPcrNotQuoted { pcr, event_index } => {
                Self::EventLogPcrNotQuoted { pcr, event_index }
            }
            Failure::SecureBootNotAllowed {
                actual,
                event_index,
                ..
            } => Self::SecureBootNotAllowed {
                actual,
                event_index,
            },
            Failure::BootDigestNotAllowed {
                kind,
                event_index,
                digest,
                name,
            } => Self::BootDigestNotAllowed {
                kind,
                event_index,
                digest,
                name,
            },
            Failure::BootDigestForbidden {
                kind,
                event_index,
                digest,
                name,
            } => Self::BootDigestForbidden {
                kind,
                event_index,
                digest,
                name,
            },
            Failure::CmdlineNotAllowed {
                event_index,
                cmdline,
            } => Self::CmdlineNotAllowed {
                event_index,
                cmdline,
            },
            Failure::DbxEntryMissing { event_index, .. } => Self::DbxEntryMissing { event_index },
            Failure::ImaPcrMismatch {
                bank,
                replayed,
                quoted,
                entries_from,
                entries_to,
            } => Self::ImaPcrMismatch {
                bank,
                replayed,
                quoted,
                entries_from,
                entries_to,
            },
            Failure::ImaContinuityBroken {
                cursor_entries,
                reason,
            } => Self::ImaContinuityBroken {
                cursor_entries,
                reason,
            },
            Failure::ImaEntryDenied {
                entry_index,
                path,
                digest,
            } => Self::ImaEntryDenied {
                entry_index,
                path,
                digest,
            },
            Failure::ImaEntryNotAllowed {
                entry_index,
                path,
                digest,
                reason,
            } => Self::ImaEntryNotAllowed {
                entry_index,
                path,
                digest,
                reason,
            },
            Failure::ImaViolation { entry_index, path } => Self::ImaViolation { entry_index, path },
            Failure::ImaBootAggregateMismatch {
                entry_index,
                reason,
            } => Self::ImaBootAggregateMismatch {
                entry_index,
                reason,
            },
            Failure::TpmClockRollback {
                previous,
                current,
                reset_count,
            } => Self::TpmClockRollback {
                previous,
                current,
                reset_count,
            },
            Failure::TpmCounterRollback {
                counter,
                previous,
                current,
            } => Self::TpmCounterRollback {
                counter,
                previous,
                current,
            },
            Failure::RebootWithoutBootLog {
                previous_reset_count,
                current_reset_count,
            } => Self::RebootWithoutBootLog {
                previous_reset_count,
                current_reset_count,
            },
            Failure::NoMeasurementRules { .. } => Self::NoMeasurementRules,
            Failure::RegoDenied { .. } => Self::RegoDenied,
            Failure::RegoError { .. } => Self::RegoError,
        }
    }
}

impl PublicFailure {
    /// Every failure of a list, as clients see them.
    pub fn all(failures: &[Failure]) -> Vec<PublicFailure> {
        failures.iter().map(PublicFailure::from).collect()
    }
}

impl std::fmt::Display for PublicFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoGroupForHost => f.write_str("no policy group covers this host"),
            Self::PcrMissing { bank, pcr } => {
                write!(f, "PCR {pcr} ({bank}) missing from the quote")
            }
            Self::PcrNotAllowed {
                bank, pcr, actual, ..
            } => write!(f, "PCR {pcr} ({bank}) = {actual} is not an allowed value"),
            Self::WorkloadUnknown { workload } => {
                write!(f, "workload {workload} is not allowed for this host")
            }
            Self::WorkloadDigestNotAllowed { workload, actual } => {
                write!(f, "workload {workload} digest {actual} is not allowed")
            }
            Self::EvidenceRejected { stage, reason } => write!(f, "{stage}: {reason}"),
            Self::SnpPolicyMissing => {
                f.write_str("the host's policy group takes no SEV-SNP evidence")
            }
            Self::SnpPolicyViolated { snp_rule, actual } => {
                write!(f, "SEV-SNP rule {snp_rule:?} not met (report has {actual})")
            }
            Self::LogMissing { log } => write!(f, "policy requires the {log} log"),
            Self::EventLogPcrMismatch { bank, pcr, .. } => {
                write!(
                    f,
                    "event log replay of PCR {pcr} ({bank}) differs from the quote"
                )
            }
            Self::EventLogPcrNotQuoted { pcr, event_index } => write!(
                f,
                "event {event_index} extends PCR {pcr}, which the quote does not cover"
            ),
            Self::SecureBootNotAllowed { .. } => f.write_str("Secure Boot state is not allowed"),
            Self::BootDigestNotAllowed {
                kind,
                event_index,
                digest,
                ..
            } => write!(
                f,
                "{kind} {digest} (event {event_index}) is not an allowed digest"
            ),
            Self::BootDigestForbidden {
                kind,
                event_index,
                digest,
                ..
            } => write!(f, "{kind} {digest} (event {event_index}) is forbidden"),
            Self::CmdlineNotAllowed { .. } => f.write_str("kernel command line is not allowed"),
            Self::DbxEntryMissing { .. } => f.write_str("a required dbx entry is missing"),
            Self::ImaPcrMismatch {
                entries_from,
                entries_to,
                ..
            } => write!(
                f,
                "IMA entries {entries_from}..{entries_to} do not replay to the quoted PCR 10"
            ),
            Self::ImaContinuityBroken { reason, .. } => {
                write!(f, "IMA list does not continue the appraised one: {reason}")
            }
            Self::ImaEntryDenied {
                entry_index, path, ..
            } => write!(f, "IMA entry {entry_index} {path} has a denied digest"),
            Self::ImaEntryNotAllowed {
                entry_index,
                path,
                reason,
                ..
            } => write!(f, "IMA entry {entry_index} {path} is not allowed: {reason}"),
            Self::ImaViolation { entry_index, path } => {
                write!(
                    f,
                    "IMA entry {entry_index} {path} is a measurement violation"
                )
            }
            Self::ImaBootAggregateMismatch {
                entry_index,
                reason,
            } => write!(f, "IMA boot_aggregate (entry {entry_index}): {reason}"),
            Self::TpmClockRollback { .. } => {
                f.write_str("TPM clock went backwards within one boot")
            }
            Self::TpmCounterRollback { counter, .. } => write!(f, "TPM {counter} decreased"),
            Self::RebootWithoutBootLog { .. } => {
                f.write_str("host rebooted without a new boot log")
            }
            Self::NoMeasurementRules => {
                f.write_str("the host's policy group has no TPM measurement rules")
            }
            Self::RegoDenied => f.write_str("the policy's Rego rules denied the evidence"),
            Self::RegoError => f.write_str("the policy's Rego rules gave no verdict"),
        }
    }
}
