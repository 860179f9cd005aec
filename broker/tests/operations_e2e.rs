//! The operations surface of the real `writ-broker serve --log-format json`
//! with a swtpm host: exact metrics after a known sequence (enrol, attest,
//! token, a failing attestation, revocation), every metric the Grafana
//! dashboard queries present in the scrape (and, where `promtool` is
//! installed, the scrape passing `promtool check metrics`), JSON log lines
//! carrying the request id and no secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_support;

use std::collections::BTreeMap;

use audit_support::*;
use base64::Engine as _;
use writ_attester::commands;

/// `(sample name with sorted labels) -> value`.
fn samples(scrape: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        out.insert(key, value.parse().unwrap());
    }
    out
}

fn scrape(b: &BrokerProc) -> String {
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", b.url()))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().unwrap()
}

/// Metric names the dashboard's queries use.
fn dashboard_metrics() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/writ.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    exprs.push(
        dash["templating"]["list"][1]["query"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            e.match_indices("writ_")
                .map(|(at, _)| {
                    e[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    names
}

#[test]
fn metrics_dashboard_and_json_logs_of_a_known_sequence() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("ops");
    let dir = tempfile::tempdir().unwrap();
    let pol = policy("ops-1", &pcrs, &[("ops", w.digest)]);
    let mut broker =
        BrokerProc::start_with(dir.path(), &pol, &roots, "", &["--log-format", "json"]);

    let h = Host::new(&broker.url());
    let host_id = h.enroll();
    let passed = commands::attest(&h.settings).unwrap();
    assert_eq!(passed.verdict, "affirming");
    let (token, _) = commands::obtain_token(&h.settings, "ops", &w.program()).unwrap();
    h.extend_pcr7();
    let failed = commands::attest(&h.settings);
    let failed_rules: Vec<String> = match &failed {
        Ok(r) => r
            .failures
            .iter()
            .map(|f| {
                serde_json::to_value(f).unwrap()["rule"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect(),
        Err(e) => panic!("a failing appraisal is answered, not refused: {e:?}"),
    };
    assert_eq!(failed.as_ref().unwrap().verdict, "contraindicated");
    assert!(!failed_rules.is_empty());
    let revoke = reqwest::blocking::Client::new()
        .post(format!("{}/v1/hosts/{host_id}/revoke", broker.url()))
        .bearer_auth(OPERATOR_TOKEN)
        .header("x-request-id", "ops-e2e-revoke")
        .send()
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 200);
    assert_eq!(revoke.headers()["x-request-id"], "ops-e2e-revoke");
    let revoked: serde_json::Value = revoke.json().unwrap();
    // The failing appraisal already revoked the host's token.
    assert_eq!(revoked["revocation"]["revoked_tokens"], 0, "{revoked}");

    // And one refusal.
    let (s, _) = broker.get_json_operator("/v1/hosts/no-such-host");
    assert_eq!(s, 404);

    // Exact counts of the sequence.
    let text = scrape(&broker);
    let m = samples(&text);
    let at = |k: &str| m.get(k).copied();
    assert_eq!(
        at("writ_appraisals_total{kind=\"tpm\",result=\"affirming\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        at("writ_appraisals_total{kind=\"tpm\",result=\"contraindicated\"}"),
        Some(1.0),
        "{text}"
    );
    let mut by_rule: BTreeMap<&str, f64> = BTreeMap::new();
    for rule in &failed_rules {
        *by_rule.entry(rule).or_default() += 1.0;
    }
    for (rule, n) in &by_rule {
        assert_eq!(
            at(&format!("writ_appraisal_failures_total{{rule=\"{rule}\"}}")),
            Some(*n),
            "{text}"
        );
    }
    let failures_total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("writ_appraisal_failures_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(failures_total, failed_rules.len() as f64, "{text}");
    assert_eq!(
        at("writ_tokens_minted_total{kind=\"tpm\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        at("writ_tokens_revoked_total{cause=\"appraisal\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        at("writ_tokens_revoked_total{cause=\"operator\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        at("writ_tokens_revoked_total{cause=\"stale\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(at("writ_database_errors_total"), Some(0.0), "{text}");
    assert_eq!(
        at("writ_api_errors_total{code=\"unknown_host\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(at("writ_hosts{status=\"revoked\"}"), Some(1.0), "{text}");
    assert_eq!(at("writ_hosts{status=\"trusted\"}"), Some(0.0), "{text}");
    let count = |route: &str, status: u16| {
        at(&format!(
            "writ_http_request_duration_seconds_count{{method=\"POST\",route=\"{route}\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(count("/v1/attest", 200), Some(2.0), "{text}");
    assert_eq!(count("/v1/tokens", 200), Some(1.0), "{text}");
    assert_eq!(count("/v1/hosts/{id}/revoke", 200), Some(1.0), "{text}");
    assert_eq!(count("/v1/enroll/finish", 200), Some(1.0), "{text}");

    // The audit appends of the sequence (enrolment, two appraisals, the
    // token, the revocation, the activation at start and any coalesced
    // refusal): each entry timed once and committed in one batch.
    let appends = at("writ_audit_append_duration_seconds_count").unwrap_or(0.0);
    assert!(appends >= 6.0, "{text}");
    assert_eq!(at("writ_audit_batch_entries_sum"), Some(appends), "{text}");
    assert!(
        at("writ_audit_batch_entries_count").is_some_and(|b| (1.0..=appends).contains(&b)),
        "{text}"
    );

    // The dashboard queries only what a real scrape has.
    for name in dashboard_metrics() {
        assert!(
            m.keys()
                .any(|k| k == &name || k.starts_with(&format!("{name}{{"))),
            "the dashboard queries {name}, absent from the scrape:\n{text}"
        );
    }
    // Someone else's parser of the exposition format, where installed.
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => eprintln!("promtool not run ({e}); install Debian's prometheus package for it"),
    }

    let (s, ready) = broker.get_json("/readyz");
    assert_eq!(s, 200, "{ready}");
    broker.stop();

    // JSON log lines, the request id in the request's span, no secret.
    let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let revoke_lines: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "ops-e2e-revoke")
        .collect();
    assert!(
        revoke_lines
            .iter()
            .any(|l| l["fields"]["message"] == "request" && l["fields"]["status"] == 200),
        "{log}"
    );
    assert!(
        revoke_lines
            .iter()
            .all(|l| l["span"]["route"] == "/v1/hosts/{id}/revoke"),
        "{log}"
    );
    assert!(
        !log.contains(OPERATOR_TOKEN),
        "the operator token is logged"
    );
    let token_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&token);
    assert!(!log.contains(&token_b64), "an execution token is logged");
}
