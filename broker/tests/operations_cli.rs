//! The operator CLI (`writ-broker hosts|tokens|workloads|status`) against
//! the real broker with a swtpm host, plus `policy check` and
//! `completions`: tables, `--json`, and the exit codes (0 done, 1 refused,
//! 2 unusable invocation, 3 broker unreachable).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_support;

use std::process::Command;

use audit_support::*;
use writ_attester::commands;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(url: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::new(BROKER);
    cmd.args(args)
        .env("WRIT_BROKER", url)
        .env_remove("WRIT_OPERATOR_TOKEN");
    if let Some(t) = token {
        cmd.env("WRIT_OPERATOR_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn operator_cli_against_a_broker() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("cli");
    let dir = tempfile::tempdir().unwrap();
    let pol = policy("cli-1", &pcrs, &[("cli", w.digest)]);
    let broker = BrokerProc::start(dir.path(), &pol, &roots, "");
    let url = broker.url();
    let op = Some(OPERATOR_TOKEN);
    let h = Host::new(&url);
    let host_id = h.enroll();
    commands::attest(&h.settings).unwrap();
    commands::obtain_token(&h.settings, "cli", &w.program()).unwrap();
    commands::obtain_token(&h.settings, "cli", &w.program()).unwrap();

    // A table by default ...
    let r = cli(&url, op, &["hosts", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{}", r.stdout);
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&host_id) && row.contains("trusted") && row.contains("cli-1"),
        "{row}"
    );
    // ... the API's JSON with --json.
    let r = cli(&url, op, &["hosts", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["id"], host_id.as_str());
    assert_eq!(v[0]["status"], "trusted");
    let r = cli(&url, op, &["hosts", "show", &host_id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("ak name:"), "{}", r.stdout);

    // Refused by the broker: exit 1 with its code.
    let r = cli(&url, op, &["hosts", "show", "no-such-host"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown_host"), "{}", r.stderr);
    let r = cli(&url, op, &["tokens", "revoke", "00"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalid_cti"), "{}", r.stderr);
    let r = cli(&url, Some("not-an-operator"), &["hosts", "list"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("operator_unauthorized"), "{}", r.stderr);
    // Unusable invocation: no token at all.
    let r = cli(&url, None, &["hosts", "list"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("WRIT_OPERATOR_TOKEN"), "{}", r.stderr);
    // The token from a file.
    let token_file = dir.path().join("operator-token");
    std::fs::write(&token_file, format!("{OPERATOR_TOKEN}\n")).unwrap();
    let r = cli(
        &url,
        None,
        &[
            "status",
            "--token-file",
            token_file.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["hosts"], 1);
    assert_eq!(v["by_status"]["trusted"], 1);
    assert_eq!(v["ready"]["status"], "ready");
    // Unreachable broker: exit 3.
    let r = cli("http://127.0.0.1:1", op, &["status"]);
    assert_eq!(r.code, 3, "{}", r.stderr);

    // Tokens: a table, newest first ...
    let r = cli(&url, op, &["tokens", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("CTI"), "{}", r.stdout);
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(&host_id) && l.contains("cli") && l.contains("active")),
        "{}",
        r.stdout
    );
    // ... a page at a time, following the cursor, without repeats.
    let page = |extra: &[&str]| {
        let mut args = vec!["tokens", "list", "--limit", "1", "--json"];
        args.extend_from_slice(extra);
        let r = cli(&url, op, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    let first = page(&[]);
    assert_eq!(first["tokens"].as_array().unwrap().len(), 1, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = page(&["--cursor", &cursor]);
    assert_eq!(second["tokens"].as_array().unwrap().len(), 1, "{second}");
    assert!(second.get("next_cursor").is_none(), "{second}");
    let cti = first["tokens"][0]["cti"].as_str().unwrap().to_owned();
    assert_ne!(second["tokens"][0]["cti"].as_str().unwrap(), cti);
    // Nothing revoked yet; a filter the broker refuses is exit 1.
    let r = cli(&url, op, &["tokens", "list", "--state", "revoked"]);
    assert_eq!((r.code, r.stdout.lines().count()), (0, 1), "{}", r.stdout);
    let r = cli(&url, op, &["tokens", "list", "--cursor", "!!"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalid_query"), "{}", r.stderr);
    // One token: its audit leaf is the token_minted leaf naming it.
    let r = cli(&url, op, &["tokens", "show", &cti]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("token sha-256:"), "{}", r.stdout);
    assert!(r.stdout.contains("parent: -"), "{}", r.stdout);
    let r = cli(&url, op, &["tokens", "show", &cti, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["token"]["state"], "active");
    assert_eq!(v["children"], serde_json::json!([]));
    let leaf = v["audit_index"].as_u64().unwrap();
    let (s, entries) =
        broker.get_json_operator(&format!("/v1/audit/entries?start={leaf}&end={}", leaf + 1));
    assert_eq!(s, 200);
    let decoded = entries["entries"][0]["decoded"].to_string();
    assert!(
        decoded.contains("token_minted") && decoded.contains(&cti),
        "{decoded}"
    );
    let r = cli(
        &url,
        op,
        &["tokens", "show", "00112233445566778899aabbccddeeff"],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown_token"), "{}", r.stderr);

    // Actions.
    let r = cli(&url, op, &["workloads", "revoke", "cli", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["revoked_tokens"], 2);
    let r = cli(&url, op, &["tokens", "show", &cti]);
    assert!(r.stdout.contains("revoked: "), "{}", r.stdout);
    let r = cli(
        &url,
        op,
        &["hosts", "revoke", &host_id, "--reason", "cli test"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(&format!("host {host_id}: revoked")),
        "{}",
        r.stdout
    );
    let r = cli(&url, op, &["status"]);
    assert!(r.stdout.contains("revoked  1"), "{}", r.stdout);
    let r = cli(&url, op, &["hosts", "reinstate", &host_id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(&format!("host {host_id}: enrolled")),
        "{}",
        r.stdout
    );
    let r = cli(&url, op, &["hosts", "reinstate", &host_id]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("host_not_revoked"), "{}", r.stderr);
}

#[test]
fn policy_check_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "id = \"p-1\"\n[[groups]]\nname = \"web\"\nhosts = [\"*\"]\ndangerous_accept_any_measurements = true\n",
    )
    .unwrap();
    let r = cli(
        "http://127.0.0.1:1",
        None,
        &["policy", "check", good.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("valid policy p-1 (sha256 "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("group web: hosts *"), "{}", r.stdout);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "id = \"\"\n").unwrap();
    let r = cli(
        "http://127.0.0.1:1",
        None,
        &["policy", "check", bad.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    let r = cli(
        "http://127.0.0.1:1",
        None,
        &[
            "policy",
            "check",
            dir.path().join("missing.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2);
    let r = cli("http://127.0.0.1:1", None, &["completions", "bash"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("writ-broker") && r.stdout.contains("hosts"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
}
