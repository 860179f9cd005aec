//! Shared set-up for the audit tests: the real `writ-broker serve` binary on
//! a loopback port with its own state directory, and swtpm hosts running the
//! real attester library against it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use swtpm_tests::broker::policy_toml;
use swtpm_tests::Swtpm;
use verifier_lib::crypto::HashAlg;
use writ_attester::commands::{self, Settings};
use writ_attester::tpm::{AkAlg, Tpm};

pub const BROKER: &str = env!("CARGO_BIN_EXE_writ-broker");
pub const ORIGIN: &str = "writ-test/audit";
pub const POLICY_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// The operator token every [`BrokerProc`] accepts.
pub const OPERATOR_TOKEN: &str = "writ-audit-test-operator";

/// A `writ-broker serve` process. Killed (SIGKILL) on drop.
pub struct BrokerProc {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl BrokerProc {
    /// Writes config, policy and EK roots into `dir` and starts the broker.
    pub fn start(dir: &Path, policy: &str, ek_roots_pem: &[u8], audit_extra: &str) -> BrokerProc {
        Self::start_with(dir, policy, ek_roots_pem, audit_extra, &[])
    }

    /// [`Self::start`] with extra `serve` arguments (e.g. `--log-format json`).
    pub fn start_with(
        dir: &Path,
        policy: &str,
        ek_roots_pem: &[u8],
        audit_extra: &str,
        serve_args: &[&str],
    ) -> BrokerProc {
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        std::fs::write(dir.join("ek-roots.pem"), ek_roots_pem).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nurl = \"sqlite://{db}\"\n[keys]\ndir = \"{keys}\"\n\
             [policy]\nfile = \"{policy}\"\nreload_interval_secs = 1\n[trust]\nbundled_manufacturers = false\nek_roots = [\"{roots}\"]\n\
             [audit]\norigin = \"{ORIGIN}\"\n{audit_extra}\n\
             [[operators.tokens]]\nname = \"audit-test\"\nsha256 = \"{op}\"\n",
            db = dir.join("writ.db").display(),
            keys = dir.join("keys").display(),
            policy = dir.join("policy.toml").display(),
            roots = dir.join("ek-roots.pem").display(),
            op = hex::encode(HashAlg::Sha256.digest(OPERATOR_TOKEN.as_bytes())),
        );
        std::fs::write(dir.join("broker.toml"), cfg).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("broker.log"))
            .unwrap();
        let child = Command::new(BROKER)
            .arg("serve")
            .arg("--config")
            .arg(dir.join("broker.toml"))
            .args(serve_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut b = BrokerProc {
            dir: dir.to_owned(),
            port,
            child: Some(child),
        };
        b.wait_ready();
        b
    }

    fn wait_ready(&mut self) {
        let http = reqwest::blocking::Client::new();
        for _ in 0..300 {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "broker exited with {status}: {}",
                        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
                    );
                }
            }
            if http
                .get(format!("{}/healthz", self.url()))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("broker did not become ready");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("writ.db")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        let r = reqwest::blocking::get(format!("{}{path}", self.url())).unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (s, t) = self.get_text(path);
        (
            s,
            serde_json::from_str(&t).unwrap_or(serde_json::Value::Null),
        )
    }

    /// GET as an operator (`Authorization: Bearer` [`OPERATOR_TOKEN`]).
    pub fn get_json_operator(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.url()))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .unwrap();
        let s = r.status().as_u16();
        (
            s,
            serde_json::from_str(&r.text().unwrap()).unwrap_or(serde_json::Value::Null),
        )
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait (graceful).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            c.wait().unwrap();
        }
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One attesting host with its own (distinct) TPM.
pub struct Host {
    pub swtpm: Swtpm,
    pub state_dir: tempfile::TempDir,
    pub settings: Settings,
}

impl Host {
    pub fn new(broker_url: &str) -> Host {
        let swtpm = Swtpm::start_distinct().unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            broker: broker_url.to_owned(),
            failover: Default::default(),
            ca_cert: None,
            tcti: swtpm.tcti(),
            state_dir: state_dir.path().to_owned(),
            issuer: "writ-broker".into(),
            logs: writ_attester::logs::LogSources::none(),
        };
        Host {
            swtpm,
            state_dir,
            settings,
        }
    }

    pub fn enroll(&self) -> String {
        commands::enroll(&self.settings, AkAlg::EccP256)
            .unwrap()
            .host_id
    }

    pub fn extend_pcr7(&self) {
        Tpm::open(&self.swtpm.tcti())
            .unwrap()
            .pcr_extend(7, HashAlg::Sha256, &[0x5a; 32])
            .unwrap();
    }
}

/// sha256 values of the policy PCRs of a fresh swtpm, and its CA roots.
pub fn fresh_pcrs() -> (BTreeMap<u8, Vec<u8>>, Vec<u8>) {
    let probe = Swtpm::start().unwrap();
    let mut tpm = Tpm::open(&probe.tcti()).unwrap();
    let v = tpm
        .pcr_read(&[(HashAlg::Sha256, POLICY_PCRS.to_vec())])
        .unwrap();
    drop(tpm);
    (
        v.get(&HashAlg::Sha256).cloned().unwrap(),
        probe.ca_roots_pem(),
    )
}

/// A workload script and its digest.
pub struct Workload {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub digest: [u8; 32],
}

impl Workload {
    pub fn new(tag: &str) -> Workload {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{tag}.sh"));
        let body = format!("#!/bin/sh\necho {tag}\n");
        std::fs::write(&path, &body).unwrap();
        let digest = HashAlg::Sha256.digest(body.as_bytes()).try_into().unwrap();
        Workload { dir, path, digest }
    }

    pub fn program(&self) -> commands::Program {
        commands::resolve_program(self.path.to_str().unwrap()).unwrap()
    }
}

pub fn policy(id: &str, pcrs: &BTreeMap<u8, Vec<u8>>, workloads: &[(&str, [u8; 32])]) -> String {
    policy_toml(id, pcrs, workloads)
}

/// Runs `writ-broker audit <args>`; returns exit code and parsed JSON.
pub fn audit(args: &[&str]) -> (i32, serde_json::Value, Output) {
    let out = Command::new(BROKER)
        .arg("audit")
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, out)
}

/// `audit verify --db DB --keys-dir KEYS [extra]`.
pub fn verify_db(db: &Path, keys: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--keys-dir",
        keys.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, json, out) = audit(&args);
    assert!(
        code == 0 || code == 1,
        "verify unusable ({code}): {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, json)
}

/// A SQLite connection for tampering with a copy of the database.
pub fn sqlite(db: &Path) -> Sqlite {
    Sqlite(db.to_owned())
}

pub struct Sqlite(PathBuf);

impl Sqlite {
    /// Runs SQL through the real `sqlx` SQLite driver (no broker code).
    pub fn exec(&self, sql: &str, binds: &[SqlValue]) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::ConnectOptions as _;
            let mut conn = format!("sqlite://{}", self.0.display())
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut q = sqlx::query(sql);
            for b in binds {
                q = match b {
                    SqlValue::Int(i) => q.bind(*i),
                    SqlValue::Blob(v) => q.bind(v.clone()),
                    SqlValue::Text(t) => q.bind(t.clone()),
                };
            }
            q.execute(&mut conn).await.unwrap();
        });
    }

    pub fn leaf(&self, idx: i64) -> (Vec<u8>, Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::{ConnectOptions as _, Row as _};
            let mut conn = format!("sqlite://{}", self.0.display())
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .connect()
                .await
                .unwrap();
            let r = sqlx::query("SELECT leaf, leaf_hash FROM audit_leaves WHERE idx = $1")
                .bind(idx)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            (r.get("leaf"), r.get("leaf_hash"))
        })
    }

    pub fn count(&self, sql: &str) -> i64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::ConnectOptions as _;
            let mut conn = format!("sqlite://{}", self.0.display())
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .connect()
                .await
                .unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        })
    }

    pub fn checkpoints(&self) -> Vec<(i64, i64, String)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::{ConnectOptions as _, Row as _};
            let mut conn = format!("sqlite://{}", self.0.display())
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .connect()
                .await
                .unwrap();
            sqlx::query("SELECT id, size, note FROM audit_checkpoints ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("id"), r.get("size"), r.get("note")))
                .collect()
        })
    }
}

pub enum SqlValue {
    Int(i64),
    Blob(Vec<u8>),
    Text(String),
}

/// Copies a stopped broker's database (with its WAL files) to `to`.
pub fn copy_db(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    for ext in ["-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{ext}", from.display()));
        if f.exists() {
            std::fs::copy(&f, format!("{}{ext}", to.display())).unwrap();
        }
    }
}
