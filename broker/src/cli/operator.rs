//! Operator commands over a running broker's HTTP API: `hosts`, `tokens`,
//! `workloads` and `status`. The operator token comes from
//! `WRIT_OPERATOR_TOKEN` or `--token-file`; the broker from `--broker` /
//! `WRIT_BROKER`. Output is a table, or the API's JSON with `--json`.
//!
//! Exit codes: 0 done; 1 the broker refused (its `error.code` is printed);
//! 2 unusable invocation (no token, unreadable file); 3 the broker could
//! not be reached or failed (5xx).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use verifier_lib::api::governance::{
    HostStateResponse, RevocationResponse, TokenDetail, TokenPage, TokenSummary,
};
use verifier_lib::api::HostView;

/// Where the broker is and who is asking.
#[derive(Debug, Args)]
pub struct Connection {
    /// The broker's base URL.
    #[arg(
        long,
        env = "WRIT_BROKER",
        default_value = "http://127.0.0.1:8443",
        global = true
    )]
    broker: String,
    /// A file holding the operator token (else `WRIT_OPERATOR_TOKEN`).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the broker's TLS certificate.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// `writ-broker hosts ...`
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Every host: id, status, last attestation, policy.
    List,
    /// One host, with its last failures.
    Show { id: String },
    /// Revoke a host and every token it holds.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reinstate a revoked host (it must attest again).
    Reinstate { id: String },
}

/// `writ-broker tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Tokens, newest first, one page (`--cursor` for the next one).
    List {
        /// Only tokens issued to this host.
        #[arg(long)]
        host: Option<String>,
        /// Only tokens of this workload.
        #[arg(long)]
        workload: Option<String>,
        /// Only tokens in this state.
        #[arg(long, value_parser = ["active", "revoked", "expired"])]
        state: Option<String>,
        /// Page size (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The cursor printed after the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One token: claims summary, state, lineage and audit leaf.
    Show { cti: String },
    /// Revoke a token (hex or base64url id) and its descendants.
    Revoke {
        cti: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `writ-broker workloads ...`
#[derive(Debug, Subcommand)]
pub enum WorkloadsCommand {
    /// Revoke every token of a workload.
    Revoke {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorCliError {
    #[error("no operator token: set WRIT_OPERATOR_TOKEN or pass --token-file")]
    NoToken,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Client(String),
    #[error("broker unreachable: {0}")]
    Unreachable(String),
    #[error("the broker refused ({status}): {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the broker failed ({status}): {code}")]
    Failed { status: u16, code: String },
    #[error("unexpected answer: {0}")]
    Answer(String),
}

impl OperatorCliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            OperatorCliError::Refused { .. } => ExitCode::from(1),
            OperatorCliError::NoToken
            | OperatorCliError::Read { .. }
            | OperatorCliError::Client(_) => ExitCode::from(2),
            _ => ExitCode::from(3),
        }
    }
}

struct Api {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn connect(c: &Connection) -> Result<Api, OperatorCliError> {
        let token = match &c.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| OperatorCliError::Read {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
            None => std::env::var("WRIT_OPERATOR_TOKEN").unwrap_or_default(),
        };
        if token.is_empty() {
            return Err(OperatorCliError::NoToken);
        }
        let mut http = reqwest::blocking::Client::builder();
        if let Some(path) = &c.ca_cert {
            let pem = std::fs::read(path).map_err(|source| OperatorCliError::Read {
                path: path.clone(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| OperatorCliError::Client(format!("{}: {e}", path.display())))?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| OperatorCliError::Client(e.to_string()))?;
        Ok(Api {
            base: c.broker.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<serde_json::Value, OperatorCliError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| OperatorCliError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp
            .json()
            .map_err(|e| OperatorCliError::Answer(e.to_string()))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
        if status >= 500 {
            Err(OperatorCliError::Failed { status, code })
        } else {
            Err(OperatorCliError::Refused {
                status,
                code,
                message,
            })
        }
    }

    fn get(&self, path: &str) -> Result<serde_json::Value, OperatorCliError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    fn post(
        &self,
        path: &str,
        reason: Option<&str>,
    ) -> Result<serde_json::Value, OperatorCliError> {
        let body = match reason {
            Some(r) => serde_json::json!({ "reason": r }),
            None => serde_json::json!({}),
        };
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, OperatorCliError> {
    serde_json::from_value(v).map_err(|e| OperatorCliError::Answer(e.to_string()))
}

/// A path segment (host ids, workload names) as it goes into a URL.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone()));
    }
    out
}

fn when(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn host_rows(hosts: &[HostView]) -> Vec<Vec<String>> {
    hosts
        .iter()
        .map(|h| {
            vec![
                h.id.clone(),
                h.status.clone(),
                when(h.last_attested_at),
                h.policy_id.clone().unwrap_or_else(|| "-".to_owned()),
                h.last_failure.as_ref().map_or(0, Vec::len).to_string(),
            ]
        })
        .collect()
}

const HOST_HEADER: [&str; 5] = ["id", "status", "last attested", "policy", "failures"];

fn print(json: bool, value: &serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", human());
    }
}

fn revocation_text(r: &RevocationResponse) -> String {
    format!(
        "revoked tokens: {}\nstatus list version: {}",
        r.revoked_tokens, r.status_version
    )
}

fn host_state_text(r: &HostStateResponse) -> String {
    let mut s = format!("host {}: {}", r.host_id, r.status);
    if let Some(rev) = &r.revocation {
        s.push('\n');
        s.push_str(&revocation_text(rev));
    }
    s
}

fn hosts(c: &Connection, cmd: HostsCommand) -> Result<(), OperatorCliError> {
    let api = Api::connect(c)?;
    match cmd {
        HostsCommand::List => {
            let v = api.get("/v1/hosts")?;
            let list: Vec<HostView> = parse(v.clone())?;
            print(c.json, &v, || table(&HOST_HEADER, &host_rows(&list)));
        }
        HostsCommand::Show { id } => {
            let v = api.get(&format!("/v1/hosts/{}", segment(&id)))?;
            let h: HostView = parse(v.clone())?;
            print(c.json, &v, || {
                let mut s = table(&HOST_HEADER, &host_rows(std::slice::from_ref(&h)));
                s.push_str(&format!(
                    "\nenrolled: {}\nak name: {}",
                    when(Some(h.enrolled_at)),
                    h.ak_name
                ));
                for f in h.last_failure.iter().flatten() {
                    s.push_str(&format!(
                        "\nfailure: {}",
                        serde_json::to_string(f).unwrap_or_default()
                    ));
                }
                s
            });
        }
        HostsCommand::Revoke { id, reason } => {
            let v = api.post(
                &format!("/v1/hosts/{}/revoke", segment(&id)),
                reason.as_deref(),
            )?;
            let r: HostStateResponse = parse(v.clone())?;
            print(c.json, &v, || host_state_text(&r));
        }
        HostsCommand::Reinstate { id } => {
            let v = api.post(&format!("/v1/hosts/{}/reinstate", segment(&id)), None)?;
            let r: HostStateResponse = parse(v.clone())?;
            print(c.json, &v, || host_state_text(&r));
        }
    }
    Ok(())
}

fn revoke(c: &Connection, path: String, reason: Option<&str>) -> Result<(), OperatorCliError> {
    let api = Api::connect(c)?;
    let v = api.post(&path, reason)?;
    let r: RevocationResponse = parse(v.clone())?;
    print(c.json, &v, || revocation_text(&r));
    Ok(())
}

/// `writ-broker status`: hosts by status and the broker's readiness.
fn status(c: &Connection) -> Result<(), OperatorCliError> {
    let api = Api::connect(c)?;
    let list: Vec<HostView> = parse(api.get("/v1/hosts")?)?;
    let ready = api
        .http
        .get(format!("{}/readyz", api.base))
        .send()
        .map_err(|e| OperatorCliError::Unreachable(e.without_url().to_string()))?
        .json::<serde_json::Value>()
        .map_err(|e| OperatorCliError::Answer(e.to_string()))?;
    let mut by_status = std::collections::BTreeMap::<String, u64>::new();
    for h in &list {
        *by_status.entry(h.status.clone()).or_default() += 1;
    }
    let failing: Vec<&HostView> = list.iter().filter(|h| h.status == "failed").collect();
    let summary = serde_json::json!({
        "hosts": list.len(),
        "by_status": by_status,
        "failing": failing.iter().map(|h| &h.id).collect::<Vec<_>>(),
        "ready": ready,
    });
    print(c.json, &summary, || {
        let rows: Vec<Vec<String>> = by_status
            .iter()
            .map(|(s, n)| vec![s.clone(), n.to_string()])
            .collect();
        let mut s = format!(
            "broker: {}\n{}",
            ready["status"].as_str().unwrap_or("unknown"),
            table(&["status", "hosts"], &rows)
        );
        for h in failing {
            s.push_str(&format!(
                "\nfailing: {} (last attested {})",
                h.id,
                when(h.last_attested_at)
            ));
        }
        s
    });
    Ok(())
}

fn finish(result: Result<(), OperatorCliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writ-broker: {e}");
            e.exit_code()
        }
    }
}

pub fn run_hosts(c: &Connection, cmd: HostsCommand) -> ExitCode {
    finish(hosts(c, cmd))
}

const TOKEN_HEADER: [&str; 6] = ["cti", "host", "workload", "state", "issued", "expires"];

fn token_rows(tokens: &[TokenSummary]) -> Vec<Vec<String>> {
    tokens
        .iter()
        .map(|t| {
            vec![
                t.cti.clone(),
                t.host_id.clone(),
                t.workload.clone(),
                t.state.clone(),
                when(Some(t.iat)),
                when(Some(t.exp)),
            ]
        })
        .collect()
}

/// The query string of `tokens list`.
fn token_list_query(
    host: Option<&str>,
    workload: Option<&str>,
    state: Option<&str>,
    limit: u32,
    cursor: Option<&str>,
) -> String {
    let mut q = vec![format!("limit={limit}")];
    for (k, v) in [
        ("host", host),
        ("workload", workload),
        ("state", state),
        ("cursor", cursor),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", segment(v)));
        }
    }
    q.join("&")
}

fn token_detail_text(d: &TokenDetail) -> String {
    let t = &d.token;
    let mut s = table(&TOKEN_HEADER, &token_rows(std::slice::from_ref(t)));
    let mut fact = |k: &str, v: String| s.push_str(&format!("\n{k}: {v}"));
    fact("policy", t.policy_id.clone());
    fact(
        "workload digest",
        if t.workload_digest.is_empty() {
            "-".into()
        } else {
            t.workload_digest.clone()
        },
    );
    fact("token sha-256", d.token_sha256.clone());
    fact(
        "audit leaf",
        d.audit_index.map_or_else(|| "-".into(), |i| i.to_string()),
    );
    fact(
        "status list",
        t.status_list.map_or_else(
            || "-".into(),
            |e| format!("epoch {} index {}", e.epoch, e.idx),
        ),
    );
    if t.state == "revoked" {
        fact(
            "revoked",
            format!(
                "{} ({})",
                when(t.revoked_at),
                t.revocation_reason.as_deref().unwrap_or("-")
            ),
        );
    }
    fact("parent", t.parent_cti.clone().unwrap_or_else(|| "-".into()));
    for c in &d.children {
        fact("child", format!("{} {} {}", c.cti, c.workload, c.state));
    }
    if d.more_children {
        fact("child", "... (more)".into());
    }
    s
}

fn tokens(c: &Connection, cmd: TokensCommand) -> Result<(), OperatorCliError> {
    match cmd {
        TokensCommand::List {
            host,
            workload,
            state,
            limit,
            cursor,
        } => {
            let api = Api::connect(c)?;
            let q = token_list_query(
                host.as_deref(),
                workload.as_deref(),
                state.as_deref(),
                limit,
                cursor.as_deref(),
            );
            let v = api.get(&format!("/v1/tokens?{q}"))?;
            let page: TokenPage = parse(v.clone())?;
            print(c.json, &v, || {
                table(&TOKEN_HEADER, &token_rows(&page.tokens))
            });
            if let (Some(next), false) = (&page.next_cursor, c.json) {
                eprintln!("more: --cursor {next}");
            }
        }
        TokensCommand::Show { cti } => {
            let api = Api::connect(c)?;
            let v = api.get(&format!("/v1/tokens/{}", segment(&cti)))?;
            let d: TokenDetail = parse(v.clone())?;
            print(c.json, &v, || token_detail_text(&d));
        }
        TokensCommand::Revoke { cti, reason } => revoke(
            c,
            format!("/v1/tokens/{}/revoke", segment(&cti)),
            reason.as_deref(),
        )?,
    }
    Ok(())
}

pub fn run_tokens(c: &Connection, cmd: TokensCommand) -> ExitCode {
    finish(tokens(c, cmd))
}

pub fn run_workloads(c: &Connection, cmd: WorkloadsCommand) -> ExitCode {
    match cmd {
        WorkloadsCommand::Revoke { name, reason } => finish(revoke(
            c,
            format!("/v1/workloads/{}/revoke", segment(&name)),
            reason.as_deref(),
        )),
    }
}

pub fn run_status(c: &Connection) -> ExitCode {
    finish(status(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("web/api v2"), "web%2Fapi%20v2");
        assert_eq!(segment("host-1.a_b~"), "host-1.a_b~");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["id", "status"],
            &[
                vec!["a".into(), "trusted".into()],
                vec!["long-id".into(), "failed".into()],
            ],
        );
        assert_eq!(t, "ID       STATUS\na        trusted\nlong-id  failed");
    }
}
