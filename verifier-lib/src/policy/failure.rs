//! What an appraisal reports: the stage that rejected evidence, and every
//! way evidence or a request failed the policy. These are the full findings
//! for the audit log and the broker's log; clients get
//! [`super::public::PublicFailure`].

use crate::crypto::HashAlg;

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

/// A risk an appraisal accepted only because its policy group opted in
/// (`dangerous_*`): it does not fail the appraisal, and it is recorded with
/// it (the audit leaf's `warnings`), never silently.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// The quote's signature verified under a weak hash (SHA-1), accepted
    /// by the group's `dangerous_accept_sha1_signatures`.
    WeakSignatureHashAccepted { hash: HashAlg, group: String },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::WeakSignatureHashAccepted { hash, group } => write!(
                f,
                "quote signed with {hash}, accepted by group {group}'s dangerous_accept_sha1_signatures"
            ),
        }
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
    /// The host's group has no TPM measurement rules (`pcrs`, `boot`, `ima`;
    /// e.g. an SEV-SNP-only group) and does not say
    /// `dangerous_accept_any_measurements`: a TPM quote is refused.
    NoMeasurementRules { group: String },
    /// The group's Rego module denied the evidence: one failure per reason
    /// in its `deny` set, or one saying `allow` is not true.
    RegoDenied {
        group: String,
        package: String,
        reason: String,
    },
    /// The group's Rego module gave no verdict (instruction budget spent,
    /// run-time error, output of the wrong type): the appraisal fails.
    RegoError {
        group: String,
        package: String,
        reason: String,
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
            Failure::NoMeasurementRules { group } => write!(
                f,
                "group {group} has no TPM measurement rules (pcrs, boot, ima, rego)"
            ),
            Failure::RegoDenied {
                group,
                package,
                reason,
            } => write!(f, "group {group}: Rego data.{package} denied: {reason}"),
            Failure::RegoError {
                group,
                package,
                reason,
            } => write!(f, "group {group}: Rego data.{package} gave no verdict: {reason}"),
        }
    }
}
