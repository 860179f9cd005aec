//! Failover (issue #13 step 5): three `writ-broker serve` processes on one
//! throw-away PostgreSQL database, each with its own state directory and
//! port, sharing the token key; three swtpm hosts enroll, then re-attest
//! and request tokens continuously with all three URLs (each host's list
//! starts at a different broker). One broker is killed with SIGKILL mid-load:
//! every host keeps getting tokens from the survivors within the retry
//! budget, every token minted (delivered or not) has its audit leaf in the
//! database, and the killed broker restarts on its state directory and
//! serves again. Prints the failover gap seen by the host that was on the
//! killed broker (a figure, not an assertion).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swtpm_tests::broker::policy_toml;
use swtpm_tests::Swtpm;
use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::crypto::HashAlg;
use writ_attester::client::{Failover, RetryPolicy};
use writ_attester::commands::{self, Settings};
use writ_attester::tpm::{AkAlg, Tpm};

const BROKER: &str = env!("CARGO_BIN_EXE_writ-broker");
const POLICY_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
const BROKERS: usize = 3;
const HOSTS: usize = 3;
/// The retry budget of every host: one exchange may spend this long
/// moving between brokers before it fails.
const RETRY_BUDGET: Duration = Duration::from_secs(20);
/// Successes each host must have after the kill.
const AFTER_KILL: usize = 3;

/// A `writ-broker serve` process on `dir` (config, policy, keys, log).
/// Killed with SIGKILL on drop.
struct BrokerProcess {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl BrokerProcess {
    /// Write the configuration (storage `db_url`, audit origin `origin`)
    /// into `dir` and start the broker on a free port.
    fn configure(dir: &Path, db_url: &str, origin: &str, policy: &str, roots: &[u8]) -> u16 {
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        std::fs::write(dir.join("ek-roots.pem"), roots).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nurl = \"{db_url}\"\n\
             [keys]\ndir = \"{keys}\"\n[policy]\nfile = \"{policy}\"\nreload_interval_secs = 1\n\
             [trust]\nbundled_manufacturers = false\nek_roots = [\"{roots}\"]\n\
             [audit]\norigin = \"{origin}\"\n",
            keys = dir.join("keys").display(),
            policy = dir.join("policy.toml").display(),
            roots = dir.join("ek-roots.pem").display(),
        );
        std::fs::write(dir.join("broker.toml"), cfg).unwrap();
        port
    }

    /// Start (or restart) the broker configured in `dir`.
    fn start(dir: &Path, port: u16) -> BrokerProcess {
        let mut b = Self::spawn(dir, port);
        b.wait_ready();
        b
    }

    /// Start the process, not waiting for it to serve.
    fn spawn(dir: &Path, port: u16) -> BrokerProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("broker.log"))
            .unwrap();
        let child = Command::new(BROKER)
            .arg("serve")
            .arg("--config")
            .arg(dir.join("broker.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        BrokerProcess {
            dir: dir.to_owned(),
            port,
            child: Some(child),
        }
    }

    fn wait_ready(&mut self) {
        let http = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("broker exited with {status}: {}", self.log());
            }
            if http
                .get(format!("{}/healthz", self.url()))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("broker did not become ready: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// SIGKILL: no graceful shutdown, nothing flushed.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What one host's exchange ended with.
#[derive(Debug)]
struct Outcome {
    /// When the exchange ended.
    at: Instant,
    what: &'static str,
    /// The token's cti for a token request; the error otherwise.
    result: Result<Option<Vec<u8>>, String>,
}

struct Host {
    _swtpm: Swtpm,
    _state: tempfile::TempDir,
    settings: Settings,
}

/// sha256 values of the policy PCRs of a fresh swtpm, and its CA roots.
fn fresh_pcrs() -> (BTreeMap<u8, Vec<u8>>, Vec<u8>) {
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

/// Every `TokenMinted` leaf's cti (hex), and every token row's cti, read
/// from the shared database with sqlx (no broker code).
fn minted_in_database(db_url: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = db_url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .connect()
            .await
            .unwrap();
        let leaves: Vec<Vec<u8>> = sqlx::query_scalar("SELECT leaf FROM audit_leaves")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let leaf_ctis = leaves
            .iter()
            .filter_map(|b| match Leaf::decode(b).unwrap().decision {
                Decision::TokenMinted { cti, .. } => Some(cti),
                _ => None,
            })
            .collect();
        let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT cti FROM tokens")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        (leaf_ctis, rows.iter().map(hex::encode).collect())
    })
}

#[test]
fn a_broker_killed_mid_load_loses_no_decision() {
    let db = pg_harness::database().unwrap();
    let (pcrs, roots) = fresh_pcrs();
    let script = tempfile::tempdir().unwrap();
    let path = script.path().join("hello.sh");
    let body = "#!/bin/sh\necho hello\n";
    std::fs::write(&path, body).unwrap();
    let digest: [u8; 32] = HashAlg::Sha256.digest(body.as_bytes()).try_into().unwrap();
    let program = commands::resolve_program(path.to_str().unwrap()).unwrap();
    let policy = policy_toml("failover", &pcrs, &[("hello", digest)]);

    // Three brokers, one database, one token key: the first broker
    // generates it, the operator copies it (mode 0600) to the others.
    let dirs: Vec<tempfile::TempDir> = (0..BROKERS).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = dirs
        .iter()
        .map(|d| {
            // One log, one origin; each broker its own checkpoint key.
            BrokerProcess::configure(d.path(), &db.url(), "writ-test/failover", &policy, &roots)
        })
        .collect();
    let mut brokers = vec![BrokerProcess::start(dirs[0].path(), ports[0])];
    let shared = [writ_broker::keys::TOKEN_KEY_FILE];
    for i in 1..BROKERS {
        let keys = dirs[i].path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        for name in &shared {
            let copy = keys.join(name);
            std::fs::copy(brokers[0].keys_dir().join(name), &copy).unwrap();
            std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        brokers.push(BrokerProcess::start(dirs[i].path(), ports[i]));
    }
    let urls: Vec<String> = brokers.iter().map(BrokerProcess::url).collect();
    let key_sets: Vec<String> = urls
        .iter()
        .map(|u| {
            reqwest::blocking::get(format!("{u}/v1/keys"))
                .unwrap()
                .bytes()
                .map(hex::encode)
                .unwrap()
        })
        .collect();
    assert!(
        key_sets.iter().all(|k| *k == key_sets[0]),
        "the brokers publish different token keys"
    );

    // Host h's list starts at broker h; host 0 is on the broker we kill.
    let retry = RetryPolicy {
        budget: RETRY_BUDGET,
        ..RetryPolicy::default()
    };
    let hosts: Vec<Arc<Host>> = (0..HOSTS)
        .map(|h| {
            let swtpm = Swtpm::start_distinct().unwrap();
            let state = tempfile::tempdir().unwrap();
            let list: Vec<&str> = (0..BROKERS)
                .map(|k| urls[(h + k) % BROKERS].as_str())
                .collect();
            let settings = Settings {
                broker: list.join(","),
                failover: Failover::new(retry),
                ca_cert: None,
                tcti: swtpm.tcti(),
                state_dir: state.path().to_owned(),
                issuer: "writ-broker".into(),
                logs: writ_attester::logs::LogSources::none(),
            };
            commands::enroll(&settings, AkAlg::EccP256).unwrap();
            Arc::new(Host {
                _swtpm: swtpm,
                _state: state,
                settings,
            })
        })
        .collect();

    // Continuous load: every host requests tokens, re-attesting every
    // third round, until stopped.
    let stop = Arc::new(AtomicBool::new(false));
    // Held (shared) by each exchange, exclusively while a broker process is
    // spawned: libtss2's swtpm TCTI opens its socket without close-on-exec,
    // so a child spawned mid-exchange would inherit the host's TPM
    // connection, and swtpm (one connection at a time) would never serve
    // that host again.
    let tpm_in_use = Arc::new(std::sync::RwLock::new(()));
    let outcomes: Vec<Arc<Mutex<Vec<Outcome>>>> = (0..HOSTS)
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let threads: Vec<_> = (0..HOSTS)
        .map(|h| {
            let (host, stop, log, tpm_in_use) = (
                Arc::clone(&hosts[h]),
                Arc::clone(&stop),
                Arc::clone(&outcomes[h]),
                Arc::clone(&tpm_in_use),
            );
            let program = program.clone();
            std::thread::spawn(move || {
                let mut round = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    let exchange = tpm_in_use.read().unwrap();
                    let (what, result) = if round % 3 == 0 {
                        let r = commands::attest(&host.settings);
                        (
                            "attest",
                            match r {
                                Ok(a) if a.verdict == "affirming" => Ok(None),
                                Ok(a) => Err(format!("appraisal {}", a.verdict)),
                                Err(e) => Err(e.to_string()),
                            },
                        )
                    } else {
                        let r = commands::obtain_token(&host.settings, "hello", &program);
                        (
                            "token",
                            r.map(|(_, v)| Some(v.claims.cti))
                                .map_err(|e| e.to_string()),
                        )
                    };
                    drop(exchange);
                    log.lock().unwrap().push(Outcome {
                        at: Instant::now(),
                        what,
                        result,
                    });
                    // Continuous, not flat out: the brokers, swtpm and
                    // PostgreSQL share two cores.
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    let tokens_since = |h: usize, t: Instant| {
        outcomes[h]
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.at > t && matches!(o.result, Ok(Some(_))))
            .count()
    };
    let wait_until = |what: &str, limit: Duration, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + limit;
        while !cond() {
            if Instant::now() >= deadline {
                let last: Vec<String> = outcomes
                    .iter()
                    .map(|o| {
                        let o = o.lock().unwrap();
                        let tail: Vec<String> = o
                            .iter()
                            .rev()
                            .take(4)
                            .map(|x| format!("{}: {:?}", x.what, x.result.as_ref().map(|_| ())))
                            .collect();
                        format!("{} exchanges, last: {tail:?}", o.len())
                    })
                    .collect();
                panic!("timed out waiting for {what}; hosts: {last:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let start = Instant::now();
    wait_until("tokens before the kill", Duration::from_secs(180), &|| {
        (0..HOSTS).all(|h| tokens_since(h, start) >= 2)
    });

    // Mid-load: SIGKILL the broker host 0 is on.
    let killed_at = Instant::now();
    brokers[0].kill9();
    println!("killed broker 0 ({})", urls[0]);
    wait_until("tokens after the kill", Duration::from_secs(300), &|| {
        (0..HOSTS).all(|h| tokens_since(h, killed_at) >= AFTER_KILL)
    });
    let gap = outcomes[0]
        .lock()
        .unwrap()
        .iter()
        .find(|o| o.at > killed_at && matches!(o.result, Ok(Some(_))))
        .map(|o| o.at - killed_at);
    println!(
        "failover gap (kill -9 of its broker to the first token from a survivor, host 0): {gap:?}"
    );
    // Host 0 now sticks to a survivor (its list's first entry was killed).
    assert_ne!(hosts[0].settings.failover.preferred(), 0);

    // The killed broker restarts on its state directory, under load, and
    // serves again: once the load stopped (a TPM serves one client), a
    // host asks it alone for a token.
    brokers[0] = {
        let _no_exchange = tpm_in_use.write().unwrap();
        BrokerProcess::spawn(dirs[0].path(), ports[0])
    };
    brokers[0].wait_ready();
    let restarted_at = Instant::now();
    println!("restarted broker 0");
    wait_until(
        "tokens after the restart",
        Duration::from_secs(300),
        &|| (0..HOSTS).all(|h| tokens_since(h, restarted_at) >= 1),
    );
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let mut only_restarted = hosts[0].settings.clone();
    only_restarted.broker = brokers[0].url();
    only_restarted.failover = Failover::new(retry);
    let (_, rejoined) = commands::obtain_token(&only_restarted, "hello", &program).unwrap();

    // Every exchange of every host succeeded: failures moved to a survivor
    // within the retry budget.
    let mut received: Vec<String> = vec![hex::encode(&rejoined.claims.cti)];
    for (h, log) in outcomes.iter().enumerate() {
        let log = log.lock().unwrap();
        let failed: Vec<String> = log
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.what)))
            .collect();
        assert!(failed.is_empty(), "host {h} failed: {failed:#?}");
        received.extend(
            log.iter()
                .filter_map(|o| o.result.as_ref().ok().cloned().flatten())
                .map(hex::encode),
        );
        println!(
            "host {h}: {} exchanges, {} tokens after the kill",
            log.len(),
            log.iter()
                .filter(|o| o.at > killed_at && matches!(o.result, Ok(Some(_))))
                .count()
        );
    }

    // No token without its leaf: every token a host received, and every
    // token row (one minted by the killed broker whose answer was lost
    // included), has its TokenMinted leaf in the shared log.
    let (leaves, rows) = minted_in_database(&db.url());
    for cti in &received {
        assert!(rows.contains(cti), "received token {cti} has no row");
    }
    let orphans: Vec<&String> = rows.difference(&leaves).collect();
    assert!(
        orphans.is_empty(),
        "tokens without an audit leaf: {orphans:?}"
    );
    println!(
        "{} tokens received by hosts, {} token rows, {} token leaves",
        received.len(),
        rows.len(),
        leaves.len()
    );

    // The log over the shared database, every checkpoint under the key of
    // the broker that signed it (each broker's vkey, collected out of band).
    let trusted = tempfile::NamedTempFile::new().unwrap();
    let vkeys: String = brokers
        .iter()
        .map(|b| {
            std::fs::read_to_string(
                b.keys_dir()
                    .join(writ_broker::audit::key::CHECKPOINT_VKEY_FILE),
            )
            .unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(trusted.path(), vkeys).unwrap();
    let out = Command::new(BROKER)
        .args(["audit", "verify", "--db", &db.url(), "--trusted-keys"])
        .arg(trusted.path())
        .output()
        .unwrap();
    println!(
        "audit verify over the shared database: exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(hosts);
}
