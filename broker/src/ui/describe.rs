//! Each appraisal failure in words, for the host page: what was checked
//! (the PCR, boot event, IMA file or SEV-SNP field), what the policy
//! expected, what the host showed, and the policy rule that required it.
//! The dashboard is for operators, so unlike a client's
//! `PublicFailure` this shows what the policy allows.

use verifier_lib::policy::Failure;

/// One failure, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// What was checked, e.g. "PCR 16 (sha256)" or "IMA file /usr/bin/x".
    pub subject: String,
    /// The failure in one sentence.
    pub summary: String,
    /// What the policy allows or requires (empty when it names no value).
    pub expected: String,
    /// What the host's evidence showed.
    pub actual: String,
    /// The policy rule (or verification stage) that required it.
    pub rule: String,
}

fn list(values: &[String]) -> String {
    if values.is_empty() {
        "no value (the policy lists none)".to_owned()
    } else {
        format!("one of {}", values.join(", "))
    }
}

fn opt(v: Option<&str>, none: &str) -> String {
    v.map_or_else(|| none.to_owned(), str::to_owned)
}

fn event(index: Option<usize>) -> String {
    index.map_or_else(|| "the event log".to_owned(), |i| format!("boot event {i}"))
}

/// An SEV-SNP rule's name as the policy spells it, e.g. `measurement` or
/// `min_reported_tcb.snp`.
fn snp_rule_name(rule: verifier_lib::snp::SnpRule) -> String {
    match serde_json::to_value(rule) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| format!("{k}.{}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", "),
        _ => format!("{rule:?}"),
    }
}

fn on_off(v: bool) -> &'static str {
    if v {
        "enabled"
    } else {
        "disabled"
    }
}

/// Explain `f` in words.
pub fn describe(f: &Failure) -> Explanation {
    let e = |subject: String, summary: String, expected: String, actual: String, rule: &str| {
        Explanation {
            subject,
            summary,
            expected,
            actual,
            rule: rule.to_owned(),
        }
    };
    match f {
        Failure::NoGroupForHost { host } => e(
            format!("host {host}"),
            format!("No group of the policy covers host {host}, so nothing can be appraised."),
            "a [[groups]] entry whose hosts match this host".into(),
            "no matching group".into(),
            "groups.hosts",
        ),
        Failure::PcrMissing { bank, pcr } => e(
            format!("PCR {pcr} ({bank})"),
            format!("The quote does not contain PCR {pcr} of the {bank} bank, which the policy constrains."),
            format!("PCR {pcr} quoted"),
            "not in the quote".into(),
            "groups.pcrs",
        ),
        Failure::PcrNotAllowed {
            bank,
            pcr,
            actual,
            allowed,
        } => e(
            format!("PCR {pcr} ({bank})"),
            format!("PCR {pcr} holds a value the policy does not allow: something measured into it changed."),
            list(allowed),
            actual.clone(),
            &format!("groups.pcrs.{pcr}"),
        ),
        Failure::WorkloadUnknown { workload, group } => e(
            format!("workload {workload}"),
            format!("Workload {workload} is not allowed for hosts of group {group}."),
            format!("a [[workloads]] entry named {workload} for group {group}"),
            "no such workload rule".into(),
            "workloads.name",
        ),
        Failure::WorkloadDigestNotAllowed {
            workload,
            actual,
            allowed,
        } => e(
            format!("workload {workload}"),
            format!("The program presented as {workload} is not one of its allowed builds."),
            list(allowed),
            actual.clone(),
            "workloads.digests",
        ),
        Failure::EvidenceRejected { stage, reason } => e(
            format!("evidence ({stage})"),
            format!("The evidence was rejected at the {stage} check before the policy was applied: {reason}."),
            "evidence that verifies".into(),
            reason.clone(),
            &format!("verification stage {stage}"),
        ),
        Failure::SnpPolicyMissing { group } => e(
            "SEV-SNP evidence".into(),
            format!("Group {group} has no SEV-SNP policy, so SEV-SNP evidence is refused."),
            format!("a [groups.snp] section in group {group}"),
            "none".into(),
            "groups.snp",
        ),
        Failure::SnpPolicyViolated {
            snp_rule,
            expected,
            actual,
        } => {
            let name = snp_rule_name(*snp_rule);
            e(
                format!("SEV-SNP field {name}"),
                format!("The SEV-SNP report's {name} breaks the group's SEV-SNP policy."),
                expected.clone(),
                actual.clone(),
                &format!("groups.snp.{name}"),
            )
        }
        Failure::LogMissing { log } => e(
            format!("{log} log"),
            format!("The policy needs the {log} log and the host did not send it."),
            format!("the {log} log"),
            "absent".into(),
            &format!("groups.{log}"),
        ),
        Failure::EventLogPcrMismatch {
            bank,
            pcr,
            replayed,
            quoted,
        } => e(
            format!("PCR {pcr} ({bank}) event log replay"),
            format!("Replaying the boot event log does not give the quoted value of PCR {pcr}: the log does not match what the TPM measured."),
            format!("replayed value {}", opt(replayed.as_deref(), "(no digests in this bank)")),
            quoted.clone(),
            "event log integrity",
        ),
        Failure::EventLogPcrNotQuoted { pcr, event_index } => e(
            format!("boot event {event_index}"),
            format!("Boot event {event_index} extends PCR {pcr}, which the quote does not cover, so it cannot be checked."),
            format!("PCR {pcr} in the quote"),
            "not quoted".into(),
            "event log integrity",
        ),
        Failure::SecureBootNotAllowed {
            expected,
            actual,
            event_index,
        } => e(
            format!("Secure Boot ({})", event(*event_index)),
            format!("Secure Boot is {}; the policy requires it {}.", actual.map_or("not measured", on_off), on_off(*expected)),
            on_off(*expected).into(),
            actual.map_or("not measured", on_off).into(),
            "groups.boot.secure_boot",
        ),
        Failure::BootDigestNotAllowed {
            kind,
            event_index,
            digest,
            name,
        } => e(
            format!("boot event {event_index} ({kind}{})", name.as_deref().map(|n| format!(" {n}")).unwrap_or_default()),
            format!("The {kind} loaded at boot event {event_index} is not in the allowed list."),
            format!("a digest listed in the policy's allowed {kind} digests"),
            digest.clone(),
            &format!("groups.boot.{kind}"),
        ),
        Failure::BootDigestForbidden {
            kind,
            event_index,
            digest,
            name,
        } => e(
            format!("boot event {event_index} ({kind}{})", name.as_deref().map(|n| format!(" {n}")).unwrap_or_default()),
            format!("The {kind} loaded at boot event {event_index} is explicitly forbidden."),
            "any digest not on the forbidden list".into(),
            digest.clone(),
            "groups.boot.forbidden",
        ),
        Failure::CmdlineNotAllowed {
            event_index,
            cmdline,
        } => e(
            format!("kernel command line ({})", event(*event_index)),
            "The kernel command line matches no rule of the policy.".into(),
            "a command line matching groups.boot.cmdline".into(),
            opt(cmdline.as_deref(), "none measured"),
            "groups.boot.cmdline",
        ),
        Failure::DbxEntryMissing { entry, event_index } => e(
            format!("Secure Boot dbx ({})", event(*event_index)),
            format!("The Secure Boot forbidden-signature database lacks the required entry {entry}."),
            entry.clone(),
            "absent".into(),
            "groups.boot.dbx_required",
        ),
        Failure::ImaPcrMismatch {
            bank,
            replayed,
            quoted,
            entries_from,
            entries_to,
        } => e(
            format!("PCR 10 ({bank}) IMA replay"),
            format!("Replaying IMA entries {entries_from}..{entries_to} does not give the quoted PCR 10: the list was altered."),
            format!("replayed value {replayed}"),
            quoted.clone(),
            "IMA list integrity",
        ),
        Failure::ImaContinuityBroken {
            cursor_entries,
            reason,
        } => e(
            "IMA measurement list".into(),
            format!("The IMA list does not continue the {cursor_entries} entries seen before in this boot: {reason}."),
            format!("a continuation of the {cursor_entries} entries already appraised"),
            reason.clone(),
            "IMA list integrity",
        ),
        Failure::ImaEntryDenied {
            entry_index,
            path,
            digest,
        } => e(
            format!("IMA file {path}"),
            format!("File {path} (IMA entry {entry_index}) has a digest on the deny list."),
            "a digest not on the deny list".into(),
            digest.clone(),
            "groups.ima.deny",
        ),
        Failure::ImaEntryNotAllowed {
            entry_index,
            path,
            digest,
            reason,
        } => e(
            format!("IMA file {path}"),
            format!("File {path} (IMA entry {entry_index}) is neither allowed, excluded nor validly signed: {reason}."),
            "an allowed digest, an excluded path or a valid signature".into(),
            opt(digest.as_deref(), "no digest"),
            "groups.ima.allow",
        ),
        Failure::ImaViolation { entry_index, path } => e(
            format!("IMA file {path}"),
            format!("IMA recorded a measurement violation for {path} (entry {entry_index}): it was changed while open."),
            "no violation".into(),
            "violation entry".into(),
            "groups.ima",
        ),
        Failure::ImaBootAggregateMismatch {
            entry_index,
            reason,
        } => e(
            format!("IMA boot_aggregate (entry {entry_index})"),
            format!("The IMA boot_aggregate does not match the boot PCRs: {reason}."),
            "the aggregate of the quoted boot PCRs".into(),
            reason.clone(),
            "IMA list integrity",
        ),
        Failure::TpmClockRollback {
            previous,
            current,
            reset_count,
        } => e(
            "TPM clock".into(),
            format!("The TPM clock went backwards within boot {reset_count}: replayed or rolled-back state."),
            format!("at least {previous}"),
            current.to_string(),
            "TPM clock progress",
        ),
        Failure::TpmCounterRollback {
            counter,
            previous,
            current,
        } => e(
            format!("TPM {counter}"),
            format!("The TPM's {counter} decreased: replayed or rolled-back state."),
            format!("at least {previous}"),
            current.to_string(),
            "TPM clock progress",
        ),
        Failure::RebootWithoutBootLog {
            previous_reset_count,
            current_reset_count,
        } => e(
            "boot event log".into(),
            format!("The host rebooted (reset count {previous_reset_count} to {current_reset_count}) and sent no new boot log."),
            "a boot event log after a reboot".into(),
            "absent".into(),
            "groups.boot",
        ),
        Failure::NoMeasurementRules { group } => e(
            format!("group {group}"),
            format!("Group {group} has no TPM measurement rules, so a TPM quote is refused."),
            "pcrs, boot, ima or rego rules (or dangerous_accept_any_measurements)".into(),
            "none".into(),
            "groups.pcrs",
        ),
        Failure::RegoDenied {
            group,
            package,
            reason,
        } => e(
            format!("Rego data.{package}"),
            format!("Group {group}'s Rego module denied the evidence: {reason}"),
            "allow true and no deny reason".into(),
            reason.clone(),
            "groups.rego",
        ),
        Failure::RegoError {
            group,
            package,
            reason,
        } => e(
            format!("Rego data.{package}"),
            format!("Group {group}'s Rego module gave no verdict ({reason}), so the appraisal fails."),
            "a verdict within the module's budget".into(),
            reason.clone(),
            "groups.rego",
        ),
        other => e(
            "appraisal".into(),
            other.to_string(),
            String::new(),
            String::new(),
            "policy",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier_lib::crypto::HashAlg;
    use verifier_lib::policy::EvidenceStage;
    use verifier_lib::snp::SnpRule;

    #[test]
    fn pcr_not_allowed_names_pcr_values_and_rule() {
        let d = describe(&Failure::PcrNotAllowed {
            bank: HashAlg::Sha256,
            pcr: 16,
            actual: "ab".into(),
            allowed: vec!["00".into(), "11".into()],
        });
        assert_eq!(d.subject, "PCR 16 (sha256)");
        assert_eq!(d.expected, "one of 00, 11");
        assert_eq!(d.actual, "ab");
        assert_eq!(d.rule, "groups.pcrs.16");
        assert!(d.summary.contains("PCR 16"), "{}", d.summary);
    }

    #[test]
    fn boot_event_and_ima_file_are_named() {
        let d = describe(&Failure::BootDigestNotAllowed {
            kind: "kernel".into(),
            event_index: 7,
            digest: "cd".into(),
            name: Some("vmlinuz".into()),
        });
        assert_eq!(d.subject, "boot event 7 (kernel vmlinuz)");
        assert_eq!(d.actual, "cd");
        assert_eq!(d.rule, "groups.boot.kernel");
        let d = describe(&Failure::ImaEntryNotAllowed {
            entry_index: 3,
            path: "/usr/bin/evil".into(),
            digest: None,
            reason: "unsigned".into(),
        });
        assert_eq!(d.subject, "IMA file /usr/bin/evil");
        assert_eq!(d.actual, "no digest");
        assert!(d.summary.contains("entry 3"), "{}", d.summary);
        assert!(d.summary.contains("unsigned"), "{}", d.summary);
    }

    #[test]
    fn snp_field_uses_the_policy_spelling() {
        let d = describe(&Failure::SnpPolicyViolated {
            snp_rule: SnpRule::Measurement,
            expected: "one of aa".into(),
            actual: "bb".into(),
        });
        assert_eq!(d.subject, "SEV-SNP field measurement");
        assert_eq!(
            (d.expected.as_str(), d.actual.as_str()),
            ("one of aa", "bb")
        );
        assert_eq!(d.rule, "groups.snp.measurement");
        let tcb = describe(&Failure::SnpPolicyViolated {
            snp_rule: SnpRule::MinReportedTcb(verifier_lib::snp::TcbComponent::Snp),
            expected: ">= 8".into(),
            actual: "3".into(),
        });
        assert_eq!(tcb.rule, "groups.snp.min_reported_tcb.snp");
    }

    #[test]
    fn secure_boot_and_missing_values_read_as_words() {
        let d = describe(&Failure::SecureBootNotAllowed {
            expected: true,
            actual: None,
            event_index: None,
        });
        assert_eq!(d.subject, "Secure Boot (the event log)");
        assert_eq!(
            (d.expected.as_str(), d.actual.as_str()),
            ("enabled", "not measured")
        );
        let d = describe(&Failure::EvidenceRejected {
            stage: EvidenceStage::Quote,
            reason: "bad signature".into(),
        });
        assert_eq!(d.rule, "verification stage quote");
        assert!(d.summary.contains("bad signature"));
        let d = describe(&Failure::PcrNotAllowed {
            bank: HashAlg::Sha256,
            pcr: 0,
            actual: "ab".into(),
            allowed: vec![],
        });
        assert_eq!(d.expected, "no value (the policy lists none)");
    }
}
