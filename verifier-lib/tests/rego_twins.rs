//! Rego twins: each TOML rule of docs/policy.md next to a Rego module that
//! says the same thing, run on the same real vectors (TPM quotes, event
//! logs, IMA lists, SEV-SNP reports). Both must reach the same decision on
//! every vector, for a rule the vector passes and for one it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use verifier_lib::appraisal::{appraise_logs, appraise_tpm, LogEvidenceRef, TpmEvidenceRef};
use verifier_lib::appraisal::{boot_rules, Verdict};
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{BootState, EventLog};
use verifier_lib::ima::{replay_from, ImaCursor, ImaLog};
use verifier_lib::policy::rego::input::{self, ImaFacts};
use verifier_lib::policy::{Failure, HostGroup, PcrMap, Policy};
use verifier_lib::snp::{SnpTrustAnchors, TcbComponent};
use verifier_lib::snp_appraisal::{appraise_snp, snp_host_id, SnpEvidenceRef};
use verifier_lib::tpm::{PcrValues, Signature};
use x509_parser::prelude::{FromDer, X509Certificate};

fn vectors(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(kind)
}

fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn policy(text: &str) -> Policy {
    Policy::parse_toml(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A group with a Rego module `source` and the given extra TOML lines.
fn rego_group(extra: &str, source: &str) -> String {
    format!("[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n{extra}\n[groups.rego]\nsource = '''\n{source}\n'''\n")
}

fn rego_verdict(group: &HostGroup, input: Value) -> bool {
    let v = group.rego.as_ref().unwrap().evaluate(input).unwrap();
    v.allow && v.deny.is_empty()
}

/// A string literal that TOML and Rego both read as `s` (JSON's escapes).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn set(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| q(v)).collect();
    format!("{{{}}}", quoted.join(", "))
}

// ---------------------------------------------------------------- quotes

struct Quote {
    label: String,
    attest: Vec<u8>,
    sig: Vec<u8>,
    ak: Vec<u8>,
    nonce: Vec<u8>,
    pcrs: PcrValues,
}

fn named_file(dir: &Path, role: &str) -> Option<Vec<u8>> {
    role.split(|c: char| c.is_whitespace() || "/(),".contains(c))
        .filter(|t| !t.is_empty())
        .map(|t| dir.join(t))
        .find(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap())
}

fn bank_json(bank: &str, values: &Value) -> PcrValues {
    PcrValues::from_json(&json!({ bank: values }).to_string()).unwrap()
}

/// Every quote of the vectors with a TPMT_SIGNATURE (raw PKCS#1 signatures
/// are verified elsewhere; `appraise_tpm` takes what attesters send).
fn quotes() -> Vec<Quote> {
    let mut out = Vec::new();
    for file in files_under(&vectors("quote"), &|p| p.ends_with("vector.json")) {
        let dir = file.parent().unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let Some(ak) = named_file(dir, v["ak_public"].as_str().unwrap()) else {
            continue;
        };
        let mut push = |label: String, q: &Value, pcrs: PcrValues| {
            let sig_role = q["signature"].as_str().unwrap();
            if sig_role.contains("raw PKCS#1") {
                return;
            }
            out.push(Quote {
                label,
                attest: named_file(dir, q["attest"].as_str().unwrap()).unwrap(),
                sig: named_file(dir, sig_role).unwrap(),
                ak: ak.clone(),
                nonce: hex::decode(q["nonce_hex"].as_str().unwrap_or("")).unwrap(),
                pcrs,
            });
        };
        let label = dir.display().to_string();
        if let Some(quotes) = v.get("quotes").and_then(Value::as_object) {
            for (bank, q) in quotes {
                push(format!("{label}/{bank}"), q, bank_json(bank, &q["pcrs"]));
            }
        } else if let Some(by_bank) = v.get("pcr_values_by_bank") {
            push(
                label,
                &v,
                PcrValues::from_json(&by_bank.to_string()).unwrap(),
            );
        } else {
            let bank = v["pcr_bank"].as_str().unwrap().to_owned();
            push(label, &v, bank_json(&bank, &v["pcr_values"]));
        }
    }
    out
}

fn appraise_quote(p: &Policy, q: &Quote) -> verifier_lib::appraisal::TpmAppraisal {
    let ev = TpmEvidenceRef {
        attest: &q.attest,
        signature: &q.sig,
        pcrs: &q.pcrs,
    };
    appraise_tpm(p, "host-a", &q.ak, ev, &q.nonce)
}

/// `[groups.pcrs] N = [values]` and its twin, on every real quote: the
/// quote's own value passes both, another value fails both.
#[test]
fn pcr_rule_twin_on_real_quotes() {
    let mut checked = 0;
    for q in quotes() {
        if Signature::parse(&q.sig).is_err() {
            continue;
        }
        let (bank, values) = q.pcrs.0.iter().next().unwrap();
        let (&pcr, actual) = values.iter().next().unwrap();
        let actual = hex::encode(actual);
        let mut other = actual.clone().into_bytes();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        let other = String::from_utf8(other).unwrap();
        for (allowed, affirm) in [(&actual, true), (&other, false)] {
            let toml = policy(&format!(
                "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\npcr_bank = \"{b}\"\n[groups.pcrs]\n{pcr} = [\"{allowed}\"]\n",
                b = bank.name()
            ));
            let rego = policy(&format!(
                "id = \"t\"\n{}",
                rego_group(
                    &format!("pcr_bank = \"{}\"", bank.name()),
                    &format!(
                        "package writ.pcrs\nallow if input.tpm.pcrs.{b}[\"{pcr}\"] in {s}",
                        b = bank.name(),
                        s = set(std::slice::from_ref(allowed))
                    )
                )
                .replace(
                    "[groups.rego]\n",
                    &format!("[groups.rego]\nquote_pcrs = [{pcr}]\n")
                )
            ));
            let t = appraise_quote(&toml, &q);
            if t.quote.is_none() {
                // Not authentic under appraise_tpm (e.g. a SHA-1 signature):
                // neither policy is consulted.
                assert!(appraise_quote(&rego, &q).quote.is_none(), "{}", q.label);
                continue;
            }
            let r = appraise_quote(&rego, &q);
            let want = if affirm {
                Verdict::Affirming
            } else {
                Verdict::Contraindicated
            };
            assert_eq!(t.verdict, want, "{}: {:?}", q.label, t.failures);
            assert_eq!(r.verdict, want, "{}: {:?}", q.label, r.failures);
            if !affirm {
                assert!(matches!(t.failures[..], [Failure::PcrNotAllowed { .. }]));
                assert!(matches!(r.failures[..], [Failure::RegoDenied { .. }]));
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} quote decisions compared");
}

// ------------------------------------------------------------ event logs

fn eventlogs() -> Vec<(String, Vec<u8>)> {
    let logs: Vec<_> = files_under(&vectors("eventlog"), &|p| {
        p.ends_with("binary_bios_measurements")
    })
    .into_iter()
    .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
    .collect();
    assert!(logs.len() >= 9);
    logs
}

/// What a TPM extended by exactly `log` (and `pcr10`) quotes over `group`'s
/// selection; PCRs nothing extended stay zero.
fn quoted_for(group: &HostGroup, log: Option<&EventLog>, pcr10: Option<&ImaCursor>) -> PcrMap {
    let bank = group.pcr_bank;
    let replayed = log.map(|l| l.replay());
    let mut out = PcrMap::new();
    for (_, pcrs) in group.pcr_selection() {
        for pcr in pcrs {
            let mut v = replayed
                .as_ref()
                .and_then(|r| r.value(bank, pcr))
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| vec![0; bank.output_len()]);
            if let (10, Some(c)) = (pcr, pcr10) {
                v = match bank {
                    HashAlg::Sha1 => c.pcr10_sha1.clone(),
                    _ => c.pcr10_sha256.clone(),
                };
            }
            out.entry(bank).or_default().insert(pcr, v);
        }
    }
    out
}

/// The bank `learn` would pick: SHA-256 when the log has it.
fn log_bank(log: &EventLog) -> HashAlg {
    let banks = log.banks();
    if banks.contains(&HashAlg::Sha256) {
        HashAlg::Sha256
    } else {
        banks.first().copied().unwrap_or(HashAlg::Sha1)
    }
}

/// The decision of `toml_rules` ([groups.boot] lines) and of `rego_source`
/// on one log: (TOML passes, Rego passes).
fn boot_twin(bytes: &[u8], toml_rules: &str, rego_source: &str) -> (bool, bool) {
    let log = EventLog::parse(bytes).unwrap();
    let bank = log_bank(&log).name();
    let toml = policy(&format!(
        "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\npcr_bank = \"{bank}\"\n[groups.boot]\n{toml_rules}\n"
    ));
    let rego = policy(&format!(
        "id = \"t\"\n{}",
        rego_group(&format!("pcr_bank = \"{bank}\""), rego_source)
    ));
    let run = |g: &HostGroup| {
        let quoted = quoted_for(g, Some(&log), None);
        let logs = LogEvidenceRef {
            eventlog: Some(bytes),
            ima: None,
            ima_offset: 0,
        };
        appraise_logs(Some(g), &quoted, (1, 0), logs, None)
    };
    let t = run(&toml.groups[0]);
    let r = run(&rego.groups[0]);
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    let boot = r
        .boot_input
        .clone()
        .expect("a replayed log gives the boot input");
    let rego_ok = rego_verdict(&rego.groups[0], json!({"tee": "tpm", "boot": boot}));
    (t.failures.is_empty(), rego_ok)
}

fn digest_hex(c: &boot_rules::BootComponent) -> Option<String> {
    c.digest.as_ref().map(|d| hex::encode(&d.value))
}

#[test]
fn boot_rule_twins_on_real_event_logs() {
    let mut outcomes = [0usize; 2];
    for (name, bytes) in eventlogs() {
        let log = EventLog::parse(&bytes).unwrap();
        let state = BootState::from_log(&log);
        let mut pairs: Vec<(String, String)> = Vec::new();

        // secure_boot = true
        pairs.push((
            "secure_boot = true".into(),
            "package writ.boot\nallow if input.boot.secure_boot == true".into(),
        ));

        // kernels.allowed: the first kernel's digest (or a foreign one).
        let kernels = boot_rules::kernels(&state);
        let first = kernels.iter().find_map(digest_hex);
        for allowed in [first.clone(), Some("ab".repeat(32))].into_iter().flatten() {
            pairs.push((
                format!("kernels.allowed = [\"{allowed}\"]"),
                format!(
                    "package writ.boot\nallow := true\ndeny contains sprintf(\"kernel %v\", [k.name]) if {{\n  some k in input.boot.kernels\n  not k.digest in {}\n}}",
                    set(&[allowed])
                ),
            ));
        }

        // boot_apps.forbidden: the first boot application's digest.
        if let Some(app) = boot_rules::boot_apps(&state).iter().find_map(digest_hex) {
            pairs.push((
                format!("boot_apps.forbidden = [\"{app}\"]"),
                format!(
                    "package writ.boot\nallow := true\ndeny contains sprintf(\"boot app %v\", [a.event_index]) if {{\n  some a in input.boot.boot_apps\n  a.digest in {}\n}}",
                    set(&[app])
                ),
            ));
        }

        // [[groups.boot.cmdlines]] prefix: the first command line's start.
        let lines = boot_rules::cmdlines(&state);
        let prefix = lines
            .first()
            .map(|(_, t)| t.chars().take(12).collect::<String>())
            .unwrap_or_else(|| "BOOT_IMAGE=".into());
        for p in [prefix, "no-such-prefix".into()] {
            pairs.push((
                format!("[[groups.boot.cmdlines]]\nprefix = {}", q(&p)),
                format!(
                    "package writ.boot\nallow if count(input.boot.cmdlines) > 0\ndeny contains c.text if {{\n  some c in input.boot.cmdlines\n  not startswith(c.text, {})\n}}",
                    q(&p)
                ),
            ));
        }

        // dbx_required: an entry of the log's dbx (or one it lacks).
        let (_, dbx) = boot_rules::dbx_sha256_entries(&log, &state);
        let mut required: Vec<String> = dbx.iter().take(1).map(hex::encode).collect();
        required.push("cd".repeat(32));
        for entry in required {
            pairs.push((
                format!("dbx_required = [\"{entry}\"]"),
                format!(
                    "package writ.boot\nallow if {} in input.boot.dbx_sha256",
                    q(&entry)
                ),
            ));
        }

        for (toml_rules, source) in pairs {
            let (t, r) = boot_twin(&bytes, &toml_rules, &source);
            assert_eq!(t, r, "{name}: {toml_rules} (TOML {t}, Rego {r})");
            outcomes[usize::from(t)] += 1;
        }
    }
    // Both outcomes occur: the twins agree on passes and on failures.
    assert!(outcomes[0] >= 9 && outcomes[1] >= 9, "{outcomes:?}");
}

// ------------------------------------------------------------------ IMA

#[test]
fn ima_rule_twins_on_real_lists() {
    let lists = files_under(&vectors("ima"), &|p| {
        p.ends_with("ascii_runtime_measurements")
    });
    assert!(lists.len() >= 7);
    let mut outcomes = [0usize; 2];
    for path in lists {
        let bytes = std::fs::read(&path).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let list = ImaLog::parse_ascii(text).unwrap();
        let digested: Vec<&verifier_lib::ima::ImaEntry> = list
            .entries
            .iter()
            .filter(|e| !(e.index == 0 && e.path == "boot_aggregate"))
            .filter(|e| !e.violation && e.file_digest.is_some())
            .collect();
        let Some(victim) = digested.get(digested.len() / 2) else {
            continue;
        };
        let victim_digest = hex::encode(&victim.file_digest.as_ref().unwrap().1);
        // allow: every (path, digest) but the victim's path.
        let mut allow = std::collections::BTreeMap::<String, Vec<String>>::new();
        for e in &digested {
            if e.path != victim.path {
                allow
                    .entry(e.path.clone())
                    .or_default()
                    .push(hex::encode(&e.file_digest.as_ref().unwrap().1));
            }
        }
        let allow_toml: Vec<String> = allow
            .iter()
            .map(|(p, d)| format!("{} = {}", q(p), serde_json::to_string(d).unwrap()))
            .collect();
        let allow_rego = serde_json::to_string_pretty(&allow).unwrap();
        let common = "allow_violations = true\nboot_aggregate = false";
        // The entries TOML rules skip: entry 0 boot_aggregate (checked
        // against the event log) and accepted violations.
        let skip = "skip(e) if e.violation\nskip(e) if {\n  e.index == 0\n  e.path == \"boot_aggregate\"\n}";
        let absent = "ef".repeat(32);
        let pairs = [
            // deny: the victim's digest is never allowed.
            (
                format!("{common}\nexclude = [\"**\"]\ndeny = [\"{victim_digest}\"]"),
                format!("package writ.ima\n{skip}\nallow := true\ndeny contains e.path if {{\n  some e in input.ima.entries\n  not skip(e)\n  e.digest == {}\n}}", q(&victim_digest)),
            ),
            // deny of a digest the list does not hold: passes.
            (
                format!("{common}\nexclude = [\"**\"]\ndeny = [\"{absent}\"]"),
                format!("package writ.ima\n{skip}\nallow := true\ndeny contains e.path if {{\n  some e in input.ima.entries\n  not skip(e)\n  e.digest == {}\n}}", q(&absent)),
            ),
            // allow: every path but the victim's.
            (
                format!("{common}\n[groups.ima.allow]\n{}", allow_toml.join("\n")),
                format!("package writ.ima\n{skip}\nallowed := {allow_rego}\nallow := true\ndeny contains e.path if {{\n  some e in input.ima.entries\n  not skip(e)\n  not e.digest in object.get(allowed, e.path, [])\n}}"),
            ),
        ];
        for (toml_rules, source) in pairs {
            let toml = policy(&format!(
                "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n[groups.ima]\n{toml_rules}\n"
            ));
            let rego = policy(&format!(
                "id = \"t\"\n{}",
                rego_group("", &source).replace(
                    "[groups.rego]\n",
                    "[groups.rego]\nquote_pcrs = [10]\nboot_aggregate = false\n"
                )
            ));
            let run = |g: &HostGroup| {
                let c = replay_from(&ImaCursor::new(), &list.entries);
                let quoted = quoted_for(g, None, Some(&c));
                let logs = LogEvidenceRef {
                    eventlog: None,
                    ima: Some(&bytes),
                    ima_offset: 0,
                };
                appraise_logs(Some(g), &quoted, (1, 0), logs, None)
            };
            let t = run(&toml.groups[0]);
            let r = run(&rego.groups[0]);
            assert!(r.failures.is_empty(), "{:?}", r.failures);
            assert_eq!(r.ima_entries.len(), list.entries.len());
            let facts = ImaFacts {
                from: r.ima_start.unwrap(),
                restarted: false,
                entries: &r.ima_entries,
            };
            let rego_ok = rego_verdict(
                &rego.groups[0],
                json!({"tee": "tpm", "ima": input::ima(facts)}),
            );
            let toml_ok = t.failures.is_empty();
            assert_eq!(
                toml_ok,
                rego_ok,
                "{}: {toml_rules}: {:?}",
                path.display(),
                t.failures
            );
            outcomes[usize::from(toml_ok)] += 1;
        }
    }
    assert!(outcomes[0] >= 7 && outcomes[1] >= 7, "{outcomes:?}");
}

// ------------------------------------------------------------------ SNP

struct Report {
    label: String,
    bytes: Vec<u8>,
    leaf: Vec<u8>,
    ask: Vec<u8>,
    now: i64,
}

fn certs(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for p in files {
        let bytes = std::fs::read(&p).unwrap_or_default();
        match p.extension().and_then(|e| e.to_str()) {
            Some("der") => out.push(bytes),
            Some("pem") => out.extend(
                pem::parse_many(&bytes)
                    .unwrap()
                    .into_iter()
                    .filter(|b| b.tag() == "CERTIFICATE")
                    .map(|b| b.contents().to_vec()),
            ),
            _ => {}
        }
    }
    out
}

/// Every report of a vector directory with its VCEK and ASK.
fn reports() -> Vec<Report> {
    let mut out = Vec::new();
    for exp in files_under(&vectors("sevsnp"), &|p| p.ends_with("expected.json")) {
        let dir = exp.parent().unwrap();
        let (mut leaf, mut ask) = (None, None);
        for der in certs(dir) {
            let (_, c) = X509Certificate::from_der(&der).unwrap();
            if !c.is_ca() {
                leaf.get_or_insert(der);
            } else if c.subject() != c.issuer() {
                ask.get_or_insert(der);
            }
        }
        let (Some(leaf), Some(ask)) = (leaf, ask) else {
            continue;
        };
        let now = X509Certificate::from_der(&leaf)
            .unwrap()
            .1
            .validity()
            .not_before
            .timestamp()
            + 86_400;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            if name.starts_with("report") && name.ends_with(".bin") {
                out.push(Report {
                    label: p.display().to_string(),
                    bytes: std::fs::read(&p).unwrap(),
                    leaf: leaf.clone(),
                    ask: ask.clone(),
                    now,
                });
            }
        }
    }
    out.sort_by(|a, b| a.label.cmp(&b.label));
    out
}

/// What every twin's SNP table has besides the rule under test: nothing
/// else refuses (the real chains end in AMD's pinned roots).
const PERMISSIVE: [(&str, &str); 7] = [
    ("dangerous_any_measurement", "true"),
    ("dangerous_any_host_data", "true"),
    ("max_vmpl", "3"),
    ("require_no_debug", "false"),
    ("allow_migration_agent", "true"),
    ("dangerous_allow_unchecked_revocation", "true"),
    ("dangerous_accept_any_tcb", "true"),
];

fn snp_table(overrides: &[(&str, String)]) -> String {
    let mut lines = Vec::new();
    for (k, v) in PERMISSIVE {
        if !overrides.iter().any(|(o, _)| o == &k) {
            lines.push(format!("{k} = {v}"));
        }
    }
    for (k, v) in overrides {
        lines.push(format!("{k} = {v}"));
    }
    format!("[groups.snp]\n{}\n", lines.join("\n"))
}

fn appraise_report(p: &Policy, r: &Report) -> verifier_lib::snp_appraisal::SnpAppraisal {
    let parsed = verifier_lib::snp::AttestationReport::parse(&r.bytes).unwrap();
    let host = snp_host_id(&parsed).unwrap();
    let trust = SnpTrustAnchors::amd_pinned().unwrap();
    let ev = SnpEvidenceRef {
        report: &r.bytes,
        leaf: &r.leaf,
        intermediate: Some(&r.ask),
    };
    appraise_snp(p, &host, ev, &trust, None, &parsed.report_data, r.now)
}

#[test]
fn snp_rule_twins_on_real_reports() {
    let reports = reports();
    assert!(reports.len() >= 5, "found {} reports", reports.len());
    let mut outcomes = [0usize; 2];
    for r in &reports {
        let open = policy(&format!(
            "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n{}",
            snp_table(&[])
        ));
        let verified = appraise_report(&open, r);
        assert_eq!(
            verified.verdict,
            Verdict::Affirming,
            "{}: {:?}",
            r.label,
            verified.failures
        );
        let v = verified.verified.unwrap();
        let rep = &v.report;
        let measurement = hex::encode(rep.measurement);
        let host_data = hex::encode(rep.host_data);
        let tcb_snp = u64::from(v.reported_tcb.component(TcbComponent::Snp).unwrap());
        let svn = u64::from(rep.guest_svn);
        // (TOML overrides of the SNP table, Rego source)
        let pairs: Vec<(Vec<(&str, String)>, String)> = vec![
            (
                vec![
                    ("dangerous_any_measurement", "false".into()),
                    ("allowed_measurements", format!("[\"{measurement}\"]")),
                ],
                format!(
                    "package writ.snp\nallow if input.snp.measurement in {}",
                    set(std::slice::from_ref(&measurement))
                ),
            ),
            (
                vec![
                    ("dangerous_any_measurement", "false".into()),
                    ("allowed_measurements", format!("[\"{}\"]", "ab".repeat(48))),
                ],
                format!(
                    "package writ.snp\nallow if input.snp.measurement in {}",
                    set(&["ab".repeat(48)])
                ),
            ),
            (
                vec![
                    ("dangerous_any_host_data", "false".into()),
                    ("allowed_host_data", format!("[\"{host_data}\"]")),
                ],
                format!(
                    "package writ.snp\nallow if input.snp.host_data == {}",
                    q(&host_data)
                ),
            ),
            (
                vec![("min_guest_svn", (svn + 1).to_string())],
                format!(
                    "package writ.snp\nallow if input.snp.guest_svn >= {}",
                    svn + 1
                ),
            ),
            (
                vec![("min_guest_svn", svn.to_string())],
                format!("package writ.snp\nallow if input.snp.guest_svn >= {svn}"),
            ),
            (
                vec![("max_vmpl", "0".into())],
                "package writ.snp\nallow if input.snp.vmpl <= 0".into(),
            ),
            (
                vec![("require_no_debug", "true".into())],
                "package writ.snp\nallow if not input.snp.policy_debug_allowed".into(),
            ),
            (
                vec![("min_reported_tcb", format!("{{ snp = {} }}", tcb_snp + 1))],
                format!(
                    "package writ.snp\nallow if input.snp.reported_tcb_snp >= {}",
                    tcb_snp + 1
                ),
            ),
            (
                vec![("min_reported_tcb", format!("{{ snp = {tcb_snp} }}"))],
                format!("package writ.snp\nallow if input.snp.reported_tcb_snp >= {tcb_snp}"),
            ),
        ];
        for (overrides, source) in pairs {
            let toml = policy(&format!(
                "id = \"t\"\n[[groups]]\nname = \"g\"\nhosts = [\"*\"]\n{}",
                snp_table(&overrides)
            ));
            let rego = policy(&format!(
                "id = \"t\"\n{}",
                rego_group(&snp_table(&[]), &source)
            ));
            let t = appraise_report(&toml, r);
            let g = appraise_report(&rego, r);
            assert!(t.verified.is_some(), "{}: {:?}", r.label, t.failures);
            assert_eq!(
                t.verdict, g.verdict,
                "{}: {overrides:?}: TOML {:?} / Rego {:?}",
                r.label, t.failures, g.failures
            );
            if g.verdict == Verdict::Contraindicated {
                assert!(
                    g.failures
                        .iter()
                        .all(|f| matches!(f, Failure::RegoDenied { .. })),
                    "{:?}",
                    g.failures
                );
            }
            outcomes[usize::from(t.verdict == Verdict::Affirming)] += 1;
        }
    }
    assert!(outcomes[0] >= 5 && outcomes[1] >= 5, "{outcomes:?}");
}
