//! The event-log and IMA stage of a TPM appraisal.
//!
//! Order: the quote is authenticated first ([`appraise_tpm`]); logs of a
//! quote that did not authenticate are not read. Then the event log is
//! replayed and compared with the QUOTED PCRs (every mismatch names PCR and
//! bank), its boot state is extracted and the group's `[groups.boot]` rules
//! applied. IMA is incremental: from the host's stored [`ImaState`], only
//! entries after the cursor are parsed and PCR 10 continues from the cursor's
//! value and must equal the quoted PCR 10; only then are the allow/deny rules
//! applied to the new entries. On the first appraisal of a boot (cursor at 0)
//! the `boot_aggregate` entry must match the event log's PCRs.
//!
//! Reboots: a stored cursor is only continued when the quote's `resetCount`
//! and `restartCount` equal the stored ones. If they changed, appraisal
//! restarts from entry 0 (and the attester must send the whole list). If
//! they did not change, a list that shrank or a PCR 10 that does not continue
//! the cursor is a failure, never a silent restart.
//!
//! The returned [`LogAppraisal::ima_state`] is what the broker stores; it is
//! `Some` only when the whole appraisal is affirming.

use serde::{Deserialize, Serialize};

use super::boot_rules::{apply_boot_rules, apply_ima_rules};
use super::{apply_rego, appraise_quote, TpmAppraisal, TpmEvidenceRef, Verdict};
use crate::eventlog::{compare_with_quirks, BootState, EventLog, Quirk, ReplayedPcrs};
use crate::ima::{
    check_boot_aggregate, check_pcr10, replay_from, ImaCursor, ImaEntry, ImaError, ImaLog,
};
use crate::policy::rego::input::ImaFacts;
use crate::policy::{EvidenceStage, Failure, HostGroup, PcrMap, Policy};

/// The logs sent with a quote.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogEvidenceRef<'a> {
    /// Raw `binary_bios_measurements`.
    pub eventlog: Option<&'a [u8]>,
    /// ASCII IMA measurements, starting at entry `ima_offset` of the list.
    pub ima: Option<&'a [u8]>,
    pub ima_offset: u64,
}

/// What the broker keeps per host between IMA appraisals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImaState {
    pub cursor: ImaCursor,
    /// `clockInfo.resetCount` of the quote that accepted the cursor.
    pub reset_count: u32,
    /// `clockInfo.restartCount` of that quote.
    pub restart_count: u32,
}

/// Everything the log stage found, on top of the quote appraisal.
#[derive(Debug, Clone)]
pub struct LogAppraisal {
    /// Verdict and every failure, quote and logs together.
    pub tpm: TpmAppraisal,
    /// Boot claims, when the event log replay matched the quote.
    pub boot_state: Option<BootState>,
    /// The replayed PCRs that matched the quote.
    pub replayed: Option<ReplayedPcrs>,
    /// A firmware quirk the replay needed.
    pub quirk: Option<Quirk>,
    /// The IMA state to store: `Some` only when the appraisal is affirming.
    pub ima_state: Option<ImaState>,
    /// IMA entries parsed and appraised in this appraisal.
    pub ima_new_entries: u64,
    /// Appraisal restarted from entry 0 because the TPM reset or restarted.
    pub ima_restarted: bool,
}

/// Appraise a quote and, when it authenticates, the logs sent with it.
/// `stored_ima` is the host's state from its last accepted appraisal.
#[allow(clippy::too_many_arguments)]
pub fn appraise_tpm_with_logs(
    policy: &Policy,
    host_id: &str,
    ak_public: &[u8],
    evidence: TpmEvidenceRef<'_>,
    expected_nonce: &[u8],
    logs: LogEvidenceRef<'_>,
    stored_ima: Option<&ImaState>,
) -> LogAppraisal {
    let mut tpm = appraise_quote(policy, host_id, ak_public, evidence, expected_nonce);
    let Some(quote) = tpm.quote.clone() else {
        return LogAppraisal::from_stage(tpm, LogStage::default());
    };
    let group = tpm
        .group
        .as_deref()
        .and_then(|g| policy.groups.iter().find(|x| x.name == g));
    let clock = (quote.clock_info.reset_count, quote.clock_info.restart_count);
    let mut stage = appraise_logs(group, &quote.pcrs.0, clock, logs, stored_ima);
    tpm.failures.append(&mut stage.failures);
    if !tpm.failures.is_empty() {
        tpm.verdict = Verdict::Contraindicated;
    }
    let ima = stage.ima_start.map(|from| ImaFacts {
        from,
        restarted: stage.ima_restarted,
        entries: &stage.ima_entries,
    });
    apply_rego(policy, host_id, &mut tpm, stage.boot_input.as_ref(), ima);
    LogAppraisal::from_stage(tpm, stage)
}

impl LogAppraisal {
    fn from_stage(tpm: TpmAppraisal, stage: LogStage) -> LogAppraisal {
        let affirming = tpm.verdict == Verdict::Affirming;
        LogAppraisal {
            tpm,
            boot_state: stage.boot_state,
            replayed: stage.replayed,
            quirk: stage.quirk,
            ima_state: stage.ima_state.filter(|_| affirming),
            ima_new_entries: stage.ima_new_entries,
            ima_restarted: stage.ima_restarted,
        }
    }
}

/// The result of the log stage alone.
#[derive(Debug, Clone, Default)]
pub struct LogStage {
    /// Every log failure (empty: the logs pass).
    pub failures: Vec<Failure>,
    pub boot_state: Option<BootState>,
    pub replayed: Option<ReplayedPcrs>,
    pub quirk: Option<Quirk>,
    /// The IMA state after the new entries (store it only if the whole
    /// appraisal is affirming).
    pub ima_state: Option<ImaState>,
    pub ima_new_entries: u64,
    pub ima_restarted: bool,
    /// For a group with a Rego module: the `boot` part of its input
    /// (`None` without a replayed event log) …
    pub boot_input: Option<serde_json::Value>,
    /// … the new IMA entries it judges …
    pub ima_entries: Vec<ImaEntry>,
    /// … and the entry they start at (`None`: no IMA list was appraised).
    pub ima_start: Option<u64>,
}

/// The log stage on its own: `quoted` must be the PCR values of a quote
/// that has ALREADY been authenticated, and `clock` its
/// `(resetCount, restartCount)`. `group` is the host's policy group.
pub fn appraise_logs(
    group: Option<&HostGroup>,
    quoted: &PcrMap,
    clock: (u32, u32),
    logs: LogEvidenceRef<'_>,
    stored_ima: Option<&ImaState>,
) -> LogStage {
    let mut out = LogStage::default();
    let mut failures = Vec::new();
    eventlog_stage(group, logs.eventlog, quoted, &mut out, &mut failures);
    let rules = group.and_then(|g| g.ima.as_ref());
    let rego_reads_ima = group.is_some_and(|g| g.rego.is_some() && g.appraises_ima());
    if rules.is_some() || rego_reads_ima {
        match logs.ima {
            None if rules.is_some() => failures.push(Failure::LogMissing { log: "ima".into() }),
            None => {}
            Some(bytes) => match ima_stage(bytes, logs.ima_offset, stored_ima, clock, quoted) {
                Err(f) => failures.push(f),
                Ok(run) => {
                    out.ima_new_entries = u64::try_from(run.entries.len()).unwrap_or(u64::MAX);
                    out.ima_restarted = run.restarted;
                    let check_aggregate = match (rules, group.and_then(|g| g.rego.as_ref())) {
                        (Some(r), _) => r.boot_aggregate,
                        (None, Some(rego)) => rego.boot_aggregate,
                        (None, None) => true,
                    };
                    if run.start_entries == 0 && check_aggregate {
                        failures.extend(boot_aggregate(&run.entries, out.replayed.as_ref()));
                    }
                    if let Some(rules) = rules {
                        failures.extend(apply_ima_rules(rules, &run.entries));
                    }
                    out.ima_state = Some(ImaState {
                        cursor: run.next,
                        reset_count: clock.0,
                        restart_count: clock.1,
                    });
                    if rego_reads_ima {
                        out.ima_start = Some(run.start_entries);
                        out.ima_entries = run.entries;
                    }
                }
            },
        }
    }
    if !failures.is_empty() {
        out.ima_state = None;
    }
    out.failures = failures;
    out
}

fn eventlog_stage(
    group: Option<&HostGroup>,
    eventlog: Option<&[u8]>,
    quoted: &PcrMap,
    out: &mut LogStage,
    failures: &mut Vec<Failure>,
) {
    let rules = group.and_then(|g| g.boot.as_ref());
    let Some(bytes) = eventlog else {
        if rules.is_some() {
            failures.push(Failure::LogMissing {
                log: "eventlog".into(),
            });
        }
        return;
    };
    let log = match EventLog::parse(bytes) {
        Ok(l) => l,
        Err(e) => {
            failures.push(Failure::EvidenceRejected {
                stage: EvidenceStage::Eventlog,
                reason: e.to_string(),
            });
            return;
        }
    };
    match compare_with_quirks(&log, quoted) {
        Err(mismatches) => {
            failures.extend(
                mismatches
                    .into_iter()
                    .map(|m| Failure::EventLogPcrMismatch {
                        bank: m.bank,
                        pcr: m.pcr,
                        replayed: m.replayed.map(hex::encode),
                        quoted: hex::encode(m.quoted),
                    }),
            );
        }
        Ok(outcome) => {
            let state = BootState::from_log(&log);
            if let (Some(rules), Some(g)) = (rules, group) {
                failures.extend(apply_boot_rules(rules, &log, &state, quoted, g.pcr_bank));
            }
            if group.is_some_and(|g| g.rego.is_some()) {
                out.boot_input = Some(crate::policy::rego::input::boot(&log, &state));
            }
            out.replayed = Some(outcome.replayed);
            out.quirk = outcome.applied;
            out.boot_state = Some(state);
        }
    }
}

struct ImaRun {
    start_entries: u64,
    entries: Vec<crate::ima::ImaEntry>,
    next: ImaCursor,
    restarted: bool,
}

fn ima_stage(
    bytes: &[u8],
    offset: u64,
    stored: Option<&ImaState>,
    (reset_count, restart_count): (u32, u32),
    quoted: &PcrMap,
) -> Result<ImaRun, Failure> {
    let rejected = |reason: String| Failure::EvidenceRejected {
        stage: EvidenceStage::Ima,
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| rejected(format!("not UTF-8: {e}")))?;
    let same_boot =
        stored.filter(|s| s.reset_count == reset_count && s.restart_count == restart_count);
    let restarted = stored.is_some() && same_boot.is_none();
    let start = same_boot.map(|s| s.cursor.clone()).unwrap_or_default();
    let broken = |reason: String| Failure::ImaContinuityBroken {
        cursor_entries: start.entries,
        reason,
    };
    let Some(skip) = start.entries.checked_sub(offset) else {
        return Err(if restarted {
            broken(format!(
                "the TPM reset or restarted since the cursor; the whole list is needed, got entries from {offset}"
            ))
        } else {
            rejected(format!(
                "entries sent from {offset}, but only {} are known",
                start.entries
            ))
        });
    };
    let skip_cursor = ImaCursor {
        entries: skip,
        ..ImaCursor::new()
    };
    let mut log = match ImaLog::parse_ascii_after(text, &skip_cursor) {
        Ok(l) => l,
        Err(ImaError::ShorterThanCursor { available, .. }) => {
            return Err(broken(format!(
                "the list has {} entries, fewer than the cursor",
                available.saturating_add(offset)
            )))
        }
        Err(e) => return Err(rejected(e.to_string())),
    };
    for e in &mut log.entries {
        e.index = e.index.saturating_add(offset);
    }
    // The list is read after the quote, so it may hold entries measured
    // after it: find the prefix whose replay gives the quoted PCR 10.
    // Entries after that prefix are left for the next appraisal.
    let mut running = start.clone();
    let mut matched = pcr10_matches(&running, quoted).then_some(0usize);
    for (i, e) in log.entries.iter().enumerate() {
        running = replay_from(&running, std::slice::from_ref(e));
        if pcr10_matches(&running, quoted) {
            matched = Some(i + 1);
        }
    }
    let Some(take) = matched else {
        return Err(match check_pcr10(&running, quoted) {
            Err(ImaError::PcrMismatch {
                bank,
                replayed,
                quoted,
                ..
            }) => Failure::ImaPcrMismatch {
                bank,
                replayed,
                quoted,
                entries_from: start.entries,
                entries_to: running.entries,
            },
            Err(e) => rejected(e.to_string()),
            Ok(()) => rejected("PCR 10 check inconsistent".into()),
        });
    };
    log.entries.truncate(take);
    let next = replay_from(&start, &log.entries);
    Ok(ImaRun {
        start_entries: start.entries,
        entries: log.entries,
        next,
        restarted,
    })
}

/// Whether the running PCR 10 equals every quoted bank it covers (at least
/// one), without building the error `check_pcr10` would.
fn pcr10_matches(cursor: &ImaCursor, quoted: &PcrMap) -> bool {
    let mut checked = 0;
    for (bank, replayed) in [
        (crate::crypto::HashAlg::Sha1, &cursor.pcr10_sha1),
        (crate::crypto::HashAlg::Sha256, &cursor.pcr10_sha256),
    ] {
        if let Some(q) = quoted.get(&bank).and_then(|b| b.get(&10)) {
            if q != replayed {
                return false;
            }
            checked += 1;
        }
    }
    checked > 0
}

fn boot_aggregate(
    entries: &[crate::ima::ImaEntry],
    replayed: Option<&ReplayedPcrs>,
) -> Option<Failure> {
    let first = entries.iter().find(|e| e.index == 0)?;
    let fail = |reason: String| {
        Some(Failure::ImaBootAggregateMismatch {
            entry_index: first.index,
            reason,
        })
    };
    let Some(replayed) = replayed else {
        return fail("no event log replay matched the quote to check it against".into());
    };
    match check_boot_aggregate(first, &replayed.banks) {
        Ok(_) => None,
        Err(e) => fail(e.to_string()),
    }
}
