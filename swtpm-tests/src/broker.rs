//! An in-process broker on an ephemeral loopback port, for end-to-end tests:
//! the real `writ-broker` state, storage (SQLite in a temp dir, or a
//! database on a throw-away PostgreSQL with [`TestBroker::start_on`]),
//! policy file and router, served over real HTTP. Its clock can be moved.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use pg_harness::Backend;
use pg_harness::TestStorage;
use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;
use writ_broker::store::Store;

/// The operator bearer token every test broker accepts (operator
/// endpoints: hosts, revoke, reinstate, policy learn).
pub const OPERATOR_TOKEN: &str = "writ-test-operator-token";

/// How a test broker is set up.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The policy document (TOML).
    pub policy: String,
    /// Extra EK roots (PEM), e.g. the swtpm local CA.
    pub ek_roots_pem: Vec<u8>,
    /// Also trust the bundled manufacturer CA store.
    pub bundled_manufacturers: bool,
}

/// A running broker. Dropping it shuts it down.
#[derive(Debug)]
pub struct TestBroker {
    pub addr: SocketAddr,
    pub store: Store,
    /// The broker's audit log handle (appends go through its writer).
    pub audit: writ_broker::audit::AuditLog,
    pub clock: OffsetClock,
    pub policy_path: PathBuf,
    dir: Option<tempfile::TempDir>,
    /// The store when it is not the default SQLite file in `dir` (kept
    /// alive, and reused by a restart).
    storage: Option<TestStorage>,
    runtime: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestBroker {
    /// Start a broker with its own state directory.
    pub fn start(opts: BrokerOptions) -> Result<TestBroker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        Self::start_in(dir, opts)
    }

    /// Start a broker with its own state directory, its store on `backend`.
    pub fn start_on(backend: Backend, opts: BrokerOptions) -> Result<TestBroker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let storage = backend
            .storage(dir.path(), "writ")
            .map_err(|e| format!("storage: {e}"))?;
        Self::start_at(
            dir,
            Some(storage),
            opts,
            |_| {},
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
    }

    /// Start a second broker on this one's store (a fleet of two on one
    /// PostgreSQL database): its own state directory and token key,
    /// configured by `tweak`.
    pub fn start_beside(
        &self,
        opts: BrokerOptions,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<TestBroker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let storage = self
            .storage
            .clone()
            .ok_or("start_beside needs a broker started with start_on")?;
        Self::start_at(
            dir,
            Some(storage),
            opts,
            tweak,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
    }

    /// Start a broker with its own state directory, its store on `backend`,
    /// configured by `tweak`.
    pub fn start_on_configured(
        backend: Backend,
        opts: BrokerOptions,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<TestBroker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let storage = backend
            .storage(dir.path(), "writ")
            .map_err(|e| format!("storage: {e}"))?;
        Self::start_at(
            dir,
            Some(storage),
            opts,
            tweak,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
    }

    /// Start a broker on an existing state directory (a restart keeps the
    /// database and the token key).
    pub fn start_in(dir: tempfile::TempDir, opts: BrokerOptions) -> Result<TestBroker, String> {
        Self::start_configured(dir, opts, |_| {})
    }

    /// Start a broker on `dir` whose configuration `tweak` adjusts (e.g. the
    /// governance intervals) before it starts.
    pub fn start_configured(
        dir: tempfile::TempDir,
        opts: BrokerOptions,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<TestBroker, String> {
        Self::start_at(
            dir,
            None,
            opts,
            tweak,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
    }

    /// Stop this broker, stay down for `downtime`, and start it again on the
    /// same state directory and the same address, as a restarted service
    /// (clients keep their URL).
    pub fn restart(
        mut self,
        downtime: std::time::Duration,
        opts: BrokerOptions,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<TestBroker, String> {
        let addr = self.addr;
        self.halt();
        let dir = self.dir.take().ok_or("no state directory")?;
        let storage = self.storage.take();
        std::thread::sleep(downtime);
        Self::start_at(dir, storage, opts, tweak, addr)
    }

    fn start_at(
        dir: tempfile::TempDir,
        storage: Option<TestStorage>,
        opts: BrokerOptions,
        tweak: impl FnOnce(&mut Config),
        bind: SocketAddr,
    ) -> Result<TestBroker, String> {
        let policy_path = dir.path().join("policy.toml");
        std::fs::write(&policy_path, &opts.policy).map_err(|e| format!("policy: {e}"))?;
        let roots = dir.path().join("ek-roots.pem");
        std::fs::write(&roots, &opts.ek_roots_pem).map_err(|e| format!("roots: {e}"))?;
        let mut cfg = Config::default();
        cfg.storage.url = match &storage {
            Some(s) => s.url().to_owned(),
            None => format!("sqlite://{}", dir.path().join("writ.db").display()),
        };
        cfg.keys.dir = dir.path().join("keys");
        cfg.policy.file = policy_path.clone();
        cfg.trust.bundled_manufacturers = opts.bundled_manufacturers;
        cfg.trust.ek_roots = if opts.ek_roots_pem.is_empty() {
            Vec::new()
        } else {
            vec![roots]
        };
        cfg.operators.tokens = vec![writ_broker::config::OperatorToken {
            name: "test-operator".into(),
            sha256: hex::encode(
                verifier_lib::crypto::HashAlg::Sha256.digest(OPERATOR_TOKEN.as_bytes()),
            ),
        }];
        tweak(&mut cfg);
        let clock = OffsetClock::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_clock = clock.clone();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let state =
                    match writ_broker::server::build_state(cfg, Arc::new(thread_clock)).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("broker state: {e}")));
                            return;
                        }
                    };
                let listener = match tokio::net::TcpListener::bind(bind).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("bind: {e}")));
                        return;
                    }
                };
                let addr = match listener.local_addr() {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("local_addr: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((
                    addr,
                    state.store.clone(),
                    state.audit.clone(),
                    tokio::runtime::Handle::current(),
                )));
                // The production accept loop, so tests run within `[limits]`.
                let limits = state.config.limits.clone();
                writ_broker::server::serve_connections(
                    listener,
                    writ_broker::app(state),
                    None,
                    &limits,
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await;
            });
        });
        let (addr, store, audit, runtime) = ready_rx
            .recv()
            .map_err(|e| format!("broker thread: {e}"))??;
        Ok(TestBroker {
            addr,
            store,
            audit,
            clock,
            policy_path,
            dir: Some(dir),
            storage,
            runtime,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Run a future (e.g. a store query) on the broker's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The broker's state directory (database, keys, policy).
    pub fn dir(&self) -> &std::path::Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(std::path::Path::new("/nonexistent"))
    }

    /// Stop the broker and hand back its state directory (for a restart).
    pub fn stop(mut self) -> Option<tempfile::TempDir> {
        self.halt();
        self.dir.take()
    }

    fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A v0 policy document with one group (`*`) requiring exactly these sha256
/// PCR values, and these workloads (name, SHA-256 digest).
pub fn policy_toml(
    id: &str,
    pcrs: &BTreeMap<u8, Vec<u8>>,
    workloads: &[(&str, [u8; 32])],
) -> String {
    let mut s = format!("id = \"{id}\"\n\n[[groups]]\nname = \"default\"\nhosts = [\"*\"]\npcr_bank = \"sha256\"\n[groups.pcrs]\n");
    for (pcr, v) in pcrs {
        let _ = writeln!(s, "{pcr} = [\"{}\"]", hex::encode(v));
    }
    for (name, digest) in workloads {
        let _ = write!(
            s,
            "\n[[workloads]]\nname = \"{name}\"\ndigests = [\"{}\"]\n",
            hex::encode(digest)
        );
    }
    s
}
