//! `writ-attester daemon`: enroll if needed, re-attest on a jittered
//! interval (backing off while the broker is unreachable), and serve the
//! local workload API (see [`crate::workload_api`]) on a Unix socket.
//!
//! The TPM serves one client at a time: every TPM use (re-attestation, token
//! requests) holds one lock.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::BrokerPool;
use crate::commands::{self, Settings};
use crate::error::{denial_reasons, CommandError};
use crate::state::{AttesterState, StateError};
use crate::token_cache::{CacheKey, Prepared, TokenCache};
use crate::tpm::AkAlg;
use crate::workload_api::{
    self, peer_identity, MeasuredExecutables, OwnExecutable, PeerIdentity, WorkloadRequest,
    WorkloadResponse, WorkloadToken, DEFAULT_SOCKET,
};

/// The daemon's configuration file (TOML).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default)]
    pub daemon: DaemonSection,
    /// Workloads that may ask for a token for themselves.
    #[serde(default)]
    pub workloads: Vec<AllowedWorkload>,
    /// Programs that may ask for tokens for what they launch.
    #[serde(default)]
    pub launchers: Vec<AllowedCaller>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    pub socket: PathBuf,
    /// The fleet's broker URLs, tried in order; when set, they replace
    /// `--broker` for enrollment, re-attestation and token requests.
    pub brokers: Vec<String>,
    /// Re-attestation interval in seconds (≥ 2).
    pub interval_secs: u64,
    /// Random spread of each interval, in percent (0–50).
    pub jitter_percent: u8,
    /// Longest wait between retries while the broker is unreachable.
    pub max_backoff_secs: u64,
    /// Hand out a new token once this fraction of the cached one's lifetime passed.
    pub renew_fraction: f64,
    /// Simultaneous socket clients.
    pub max_clients: usize,
    /// Certify a TPM request-signing key after each passing attestation and
    /// sign token requests with it (no quote per token) while the broker
    /// accepts them; falls back to a quote otherwise.
    pub request_key: bool,
    /// Give every launch its own fresh key and token (one broker round trip
    /// and one audit leaf per launch) instead of the prepared ones shared by
    /// every launch of a program until renewal.
    pub per_launch_tokens: bool,
    /// Use a held status list for at most this long after the broker served
    /// it; then fetch it again before handing out a token.
    pub status_max_age_ms: u64,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            socket: PathBuf::from(DEFAULT_SOCKET),
            brokers: Vec::new(),
            interval_secs: 60,
            jitter_percent: 10,
            max_backoff_secs: 60,
            renew_fraction: 0.8,
            max_clients: 32,
            request_key: true,
            per_launch_tokens: false,
            status_max_age_ms: 1_000,
        }
    }
}

/// A caller known by uid and executable digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowedCaller {
    pub uid: u32,
    /// SHA-256 of the executable, hex.
    pub exe_sha256: String,
}

/// A workload known by uid and executable digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowedWorkload {
    /// Workload name as the broker's policy knows it.
    pub name: String,
    pub uid: u32,
    pub exe_sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error("daemon configuration {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket {path} is served by a running daemon")]
    AlreadyRunning { path: PathBuf },
}

impl DaemonConfig {
    pub fn load(path: &Path) -> Result<Self, DaemonError> {
        let err = |reason: String| DaemonError::Config {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg: DaemonConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        let d = &self.daemon;
        if d.interval_secs < 2 {
            return Err("daemon.interval_secs must be at least 2".into());
        }
        if d.jitter_percent > 50 {
            return Err("daemon.jitter_percent must be at most 50".into());
        }
        if !(0.1..=1.0).contains(&d.renew_fraction) {
            return Err("daemon.renew_fraction must be within 0.1..=1.0".into());
        }
        if !d.brokers.is_empty() {
            crate::client::parse_broker_list(&d.brokers.join(","))
                .map_err(|e| format!("daemon.brokers: {e}"))?;
        }
        for digest in self
            .workloads
            .iter()
            .map(|w| &w.exe_sha256)
            .chain(self.launchers.iter().map(|l| &l.exe_sha256))
        {
            if hex::decode(digest).map_or(true, |d| d.len() != 32) {
                return Err(format!("exe_sha256 {digest:?} is not 32 bytes of hex"));
            }
        }
        Ok(())
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A random duration within `base ± jitter_percent`.
pub fn jittered(base: Duration, jitter_percent: u8) -> Duration {
    let mut r = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut r);
    let unit = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX); // 0..=1
    let spread = f64::from(jitter_percent) / 100.0;
    base.mul_f64((1.0 - spread + 2.0 * spread * unit).max(0.0))
}

/// Shared state of a running daemon.
#[derive(Debug)]
pub struct Daemon {
    settings: Settings,
    config: DaemonConfig,
    tpm: Mutex<()>,
    cache: TokenCache,
    /// One HTTP client for the daemon's life (built at first use).
    pool: OnceLock<BrokerPool>,
    /// This daemon's own executable, for callers running the same file.
    own_exe: Option<OwnExecutable>,
    /// Callers' executables measured before (launchers, workloads).
    measured: MeasuredExecutables,
    clients: AtomicUsize,
    stop: Arc<AtomicBool>,
    /// The broker accepted our request key (since the last attestation).
    request_key_registered: AtomicBool,
}

impl Daemon {
    /// `config.daemon.brokers`, when set, replaces `settings.broker`.
    pub fn new(mut settings: Settings, config: DaemonConfig, stop: Arc<AtomicBool>) -> Arc<Self> {
        if !config.daemon.brokers.is_empty() {
            settings.broker = config.daemon.brokers.join(",");
        }
        let status_max_age = Duration::from_millis(config.daemon.status_max_age_ms);
        Arc::new(Daemon {
            settings,
            config,
            tpm: Mutex::new(()),
            cache: TokenCache::new(status_max_age),
            pool: OnceLock::new(),
            own_exe: OwnExecutable::measure().ok(),
            measured: MeasuredExecutables::default(),
            clients: AtomicUsize::new(0),
            stop,
            request_key_registered: AtomicBool::new(false),
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleep up to `d`, waking early when stopped.
    fn pause(&self, d: Duration) {
        let end = std::time::Instant::now() + d;
        while !self.stopped() {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn locked<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.tpm.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Enroll unless already enrolled; retries with backoff until stopped.
    pub fn ensure_enrolled(&self) -> bool {
        let mut backoff = Duration::from_secs(1);
        while !self.stopped() {
            match AttesterState::load(&self.settings.state_dir) {
                Ok(_) => return true,
                Err(StateError::NotEnrolled { .. }) => {}
                Err(e) => {
                    eprintln!("writ-attester daemon: state: {e}");
                    return false;
                }
            }
            match self.locked(|| commands::enroll(&self.settings, AkAlg::EccP256)) {
                Ok(done) => {
                    eprintln!("writ-attester daemon: enrolled as {}", done.host_id);
                    return true;
                }
                Err(e) => {
                    eprintln!(
                        "writ-attester daemon: enroll failed ({}); retrying in {} s",
                        denial_reasons(&e),
                        backoff.as_secs()
                    );
                    self.pause(backoff);
                    backoff =
                        (backoff * 2).min(Duration::from_secs(self.config.daemon.max_backoff_secs));
                }
            }
        }
        false
    }

    /// Re-attest until stopped: every interval (jittered) after a success,
    /// with exponential backoff after a failure to reach the broker.
    pub fn attest_loop(&self) {
        let d = &self.config.daemon;
        let interval = Duration::from_secs(d.interval_secs);
        let mut backoff = Duration::from_secs(1);
        while !self.stopped() {
            match self.attest_once() {
                Ok(_) => {
                    backoff = Duration::from_secs(1);
                    self.pause(jittered(interval, d.jitter_percent));
                }
                Err(e) => {
                    eprintln!(
                        "writ-attester daemon: attestation failed ({}); retrying in {} ms",
                        denial_reasons(&e),
                        backoff.as_millis()
                    );
                    self.pause(jittered(backoff, d.jitter_percent));
                    backoff = (backoff * 2).min(Duration::from_secs(d.max_backoff_secs));
                }
            }
        }
    }

    /// One attestation; after a passing one, (re-)certify the request key
    /// when it is enabled and not registered.
    pub fn attest_once(&self) -> Result<verifier_lib::api::AppraisalResponse, CommandError> {
        let a = self.locked(|| commands::attest(&self.settings))?;
        if a.verdict != "affirming" {
            self.request_key_registered.store(false, Ordering::SeqCst);
            eprintln!(
                "writ-attester daemon: appraisal {}: {}",
                a.verdict,
                a.failures
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            return Ok(a);
        }
        if self.config.daemon.request_key && !self.request_key_registered.load(Ordering::SeqCst) {
            match self.locked(|| crate::request_key::register(&self.settings)) {
                Ok(_) => self.request_key_registered.store(true, Ordering::SeqCst),
                Err(e) => eprintln!(
                    "writ-attester daemon: request key not registered ({}); tokens need quotes",
                    denial_reasons(&e)
                ),
            }
        }
        Ok(a)
    }

    /// A token through the request key when the broker has it, else (or
    /// when the broker refuses the signed request) through a fresh quote.
    fn obtain(
        &self,
        workload: &str,
        digest: &[u8; 32],
        cnf: &[u8],
    ) -> Result<(Vec<u8>, verifier_lib::token::VerifiedToken), CommandError> {
        let pool = self.pool()?;
        if self.request_key_registered.load(Ordering::SeqCst) {
            let signed = self.locked(|| {
                crate::request_key::obtain_token_signed_via(
                    pool,
                    &self.settings,
                    workload,
                    digest,
                    Some(cnf),
                )
            });
            match signed {
                Ok(t) => return Ok(t),
                Err(e) => {
                    // Stale appraisal, reboot, re-enrollment: certify again
                    // after the next passing attestation.
                    self.request_key_registered.store(false, Ordering::SeqCst);
                    eprintln!(
                        "writ-attester daemon: signed token request refused ({}); using a quote",
                        denial_reasons(&e)
                    );
                }
            }
        }
        self.locked(|| {
            commands::obtain_token_via(pool, &self.settings, workload, digest, Some(cnf))
        })
    }

    /// The daemon's broker pool, built on first use.
    fn pool(&self) -> Result<&BrokerPool, CommandError> {
        if let Some(p) = self.pool.get() {
            return Ok(p);
        }
        let built = commands::brokers(&self.settings)?;
        Ok(self.pool.get_or_init(|| built))
    }

    /// Bind the socket (mode 0660), replacing a stale socket file.
    pub fn bind(&self) -> Result<UnixListener, DaemonError> {
        let path = &self.config.daemon.socket;
        let err = |source| DaemonError::Socket {
            path: path.clone(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(err(std::io::Error::other("exists and is not a socket")));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(DaemonError::AlreadyRunning { path: path.clone() });
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(listener)
    }

    /// Serve the workload API until stopped.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        while !self.stopped() {
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.fetch_add(1, Ordering::SeqCst) >= self.config.daemon.max_clients
                    {
                        self.clients.fetch_sub(1, Ordering::SeqCst);
                        let _ = reply(&stream, &refusal("busy", "too many clients"));
                        continue;
                    }
                    let me = Arc::clone(self);
                    std::thread::spawn(move || {
                        me.handle(stream);
                        me.clients.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Wake at the next connection (a polling sleep here
                    // added its half on average to every request), and
                    // every 50 ms to see whether to stop.
                    let mut fds = [rustix::event::PollFd::new(
                        &listener,
                        rustix::event::PollFlags::IN,
                    )];
                    let tick = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 50_000_000,
                    };
                    if rustix::event::poll(&mut fds, Some(&tick)).is_err() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Err(e) => {
                    eprintln!("writ-attester daemon: accept: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn handle(&self, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let answer = match peer_identity(&stream, self.own_exe.as_ref(), &self.measured) {
            Ok(peer) => self.answer(&stream, &peer),
            Err(e) => refusal("caller_unidentified", &format!("SO_PEERCRED / exe: {e}")),
        };
        let _ = reply(&stream, &answer);
    }

    fn answer(&self, stream: &UnixStream, peer: &PeerIdentity) -> WorkloadResponse {
        let Ok((line, image)) = workload_api::read_request(stream) else {
            return refusal("bad_request", "unreadable request");
        };
        let req: WorkloadRequest = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => return refusal("bad_request", &e.to_string()),
        };
        let digest_hex = hex::encode(peer.exe_digest);
        let (workload, digest, cnf) = match req {
            WorkloadRequest::Token { cnf, workload } => {
                let known = self.config.workloads.iter().find(|w| {
                    w.uid == peer.uid
                        && w.exe_sha256.eq_ignore_ascii_case(&digest_hex)
                        && workload.as_ref().is_none_or(|name| *name == w.name)
                });
                match known {
                    Some(w) => (w.name.clone(), peer.exe_digest, cnf),
                    None => {
                        return refusal(
                            "caller_unknown",
                            &format!(
                                "no workload{} configured for uid {} with executable {} (sha256 {digest_hex})",
                                workload.map(|w| format!(" {w:?}")).unwrap_or_default(),
                                peer.uid,
                                peer.exe.display()
                            ),
                        )
                    }
                }
            }
            WorkloadRequest::Launch {
                workload,
                workload_digest,
                cnf,
            } => {
                let launcher =
                    self.config.launchers.iter().any(|l| {
                        l.uid == peer.uid && l.exe_sha256.eq_ignore_ascii_case(&digest_hex)
                    });
                if !launcher {
                    return refusal(
                        "caller_not_launcher",
                        &format!(
                            "uid {} executable {} (sha256 {digest_hex}) is not a configured launcher",
                            peer.uid,
                            peer.exe.display()
                        ),
                    );
                }
                // The launcher's word is not enough: the daemon measures the
                // sealed image the launcher will exec, and mints for that.
                let Some(image) = image else {
                    return refusal(
                        "launch_unmeasured",
                        "a launch request must carry the program's sealed image (SCM_RIGHTS)",
                    );
                };
                let measured = match crate::program::measure_sealed_image(&image) {
                    Ok(d) => d,
                    Err(e) => return refusal("launch_unmeasured", &e.to_string()),
                };
                if let Some(named) = workload_digest.filter(|d| d.as_slice() != measured) {
                    return refusal(
                        "launch_digest_mismatch",
                        &format!(
                            "the launcher named digest {} but the image it sent hashes to {}",
                            hex::encode(&named),
                            hex::encode(measured)
                        ),
                    );
                }
                (workload, measured, cnf)
            }
        };
        match self.token_for(&workload, &digest, cnf.as_deref()) {
            Ok(t) => WorkloadResponse::Token(t),
            Err(e) => refusal("denied", &denial_reasons(&e)),
        }
    }

    /// A token for (workload, digest) bound to `cnf`, or (`None`) to the
    /// daemon's prepared key for it, with the key set and the status list
    /// that show it valid (see [`crate::token_cache`]): the prepared token
    /// until `renew_fraction` of its lifetime has passed, else a fresh one.
    pub fn token_for(
        &self,
        workload: &str,
        digest: &[u8; 32],
        cnf: Option<&[u8]>,
    ) -> Result<WorkloadToken, CommandError> {
        let key: CacheKey = (workload.to_owned(), *digest, cnf.map(<[u8]>::to_vec));
        let shared = cnf.is_some() || !self.config.daemon.per_launch_tokens;
        if let Some(p) = shared.then(|| self.cache.take(&key, now())).flatten() {
            match self.hand_out(&p, false) {
                Ok(t) => return Ok(t),
                // Revoked or unverifiable: never handed out; prepare anew.
                Err(_) => self.cache.evict(&key, &p.token.cti),
            }
        }
        let p = self.prepare(workload, digest, cnf)?;
        let out = self.hand_out(&p, true)?;
        if shared {
            self.cache.insert(key, p.handed_out(), now());
        }
        Ok(out)
    }

    /// `p` with the trusted keys and a list showing it VALID
    /// (`refetch`: a list the broker serves now).
    fn hand_out(&self, p: &Prepared, refetch: bool) -> Result<WorkloadToken, CommandError> {
        let (keys, encoded) = self.keys(false)?;
        let list = self.cache.listed(
            self.pool()?,
            &keys,
            p.status.as_ref(),
            &p.token.cti,
            now(),
            refetch,
        )?;
        Ok(WorkloadToken {
            keys: Some(encoded),
            status_list: Some(list),
            ..p.token.clone()
        })
    }

    /// The pinned key set (advanced along the broker's rotations when
    /// `refresh` or not yet known).
    fn keys(&self, refresh: bool) -> Result<(verifier_lib::token::KeySet, Vec<u8>), CommandError> {
        if let Some(k) = self.cache.keys().filter(|_| !refresh) {
            return Ok(k);
        }
        let keys = self.pool()?.run(|broker| {
            crate::pinning::trusted_key_set(broker, &self.settings.state_dir, false)
                .map_err(CommandError::from)
        })?;
        let encoded = self.cache.set_keys(&keys)?;
        Ok((keys, encoded))
    }

    /// A fresh token for (workload, digest), bound to `cnf` or to a new key
    /// of the daemon's (its PEM in the result).
    fn prepare(
        &self,
        workload: &str,
        digest: &[u8; 32],
        cnf: Option<&[u8]>,
    ) -> Result<Prepared, CommandError> {
        let (own, cnf) = match cnf {
            Some(c) => (None, c.to_vec()),
            None => {
                let k = verifier_lib::token::SigningKey::generate()?;
                let c = k.verifying_key().to_cose_key_bytes()?;
                (Some(k), c)
            }
        };
        let (token, verified) = self.obtain(workload, digest, &cnf)?;
        let bound = verified
            .claims
            .cnf
            .as_ref()
            .and_then(|k| k.to_cose_key_bytes().ok());
        let requested = verifier_lib::token::VerifyingKey::from_cose_key_bytes(&cnf)
            .ok()
            .and_then(|k| k.to_cose_key_bytes().ok());
        if bound.is_none() || bound != requested {
            return Err(CommandError::TokenMismatch {
                field: "cnf",
                expected: "the requested key".into(),
                actual: "another or no key".into(),
            });
        }
        // A rotation may have come with the token: advance the pins now.
        self.keys(true)?;
        let c = &verified.claims;
        let life = (c.exp - c.iat).max(0) as f64;
        let token = WorkloadToken {
            token,
            cti: c.cti.clone(),
            workload: workload.to_owned(),
            expires_at: c.exp,
            renew_at: c.iat + (life * self.config.daemon.renew_fraction) as i64,
            key_pem: own.map(|k| k.to_pkcs8_pem()).transpose()?,
            keys: None,
            status_list: None,
        };
        Ok(Prepared::new(token, c.status.clone()))
    }

    /// Replace every prepared token that is due for renewal and was used.
    pub fn renew_due(&self) {
        for key in self.cache.due(now()) {
            let (workload, digest, cnf) = &key;
            match self.prepare(workload, digest, cnf.as_deref()) {
                Ok(p) => self.cache.insert(key.clone(), p, now()),
                Err(e) => eprintln!(
                    "writ-attester daemon: renewing the token of {workload} failed ({}); \
                     the next launch asks again",
                    denial_reasons(&e)
                ),
            }
        }
    }
}

fn refusal(code: &str, message: &str) -> WorkloadResponse {
    WorkloadResponse::Error {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

fn reply(mut stream: &UnixStream, r: &WorkloadResponse) -> std::io::Result<()> {
    let mut body = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    body.push(b'\n');
    stream.write_all(&body)
}

/// Run the daemon until `stop` is set: bind the socket, enroll if needed,
/// serve the workload API on a thread and re-attest on this one.
pub fn run(
    settings: Settings,
    config: DaemonConfig,
    stop: Arc<AtomicBool>,
) -> Result<(), DaemonError> {
    let daemon = Daemon::new(settings, config, stop);
    let listener = daemon.bind()?;
    let server = {
        let d = Arc::clone(&daemon);
        std::thread::spawn(move || d.serve(listener))
    };
    let renewer = {
        let d = Arc::clone(&daemon);
        std::thread::spawn(move || {
            while !d.stopped() {
                d.renew_due();
                d.pause(Duration::from_secs(1));
            }
        })
    };
    if daemon.ensure_enrolled() {
        daemon.attest_loop();
    }
    daemon.stop.store(true, Ordering::SeqCst);
    let _ = server.join();
    let _ = renewer.join();
    let _ = std::fs::remove_file(&daemon.config.daemon.socket);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(brokers: &str) -> DaemonConfig {
        toml::from_str(&format!("[daemon]\nbrokers = [{brokers}]\n")).unwrap()
    }

    /// `[daemon] brokers` is checked like `--broker` and, when set, is the
    /// list the daemon enrolls, re-attests and requests tokens with.
    #[test]
    fn daemon_brokers_are_checked_and_replace_the_flag() {
        assert!(config(r#""http://127.0.0.1:1", "http://broker.example""#)
            .validate()
            .unwrap_err()
            .contains("daemon.brokers"));
        assert!(DaemonConfig::default().validate().is_ok());
        let cfg = config(r#""http://127.0.0.1:1", "http://127.0.0.2:1""#);
        cfg.validate().unwrap();
        let settings = Settings {
            broker: "http://127.0.0.1:9".into(),
            failover: crate::client::Failover::default(),
            ca_cert: None,
            tcti: String::new(),
            state_dir: PathBuf::new(),
            issuer: "writ-broker".into(),
            logs: crate::logs::LogSources::none(),
        };
        let d = Daemon::new(settings.clone(), cfg, Arc::new(AtomicBool::new(true)));
        assert_eq!(d.settings.broker, "http://127.0.0.1:1,http://127.0.0.2:1");
        let d = Daemon::new(
            settings,
            DaemonConfig::default(),
            Arc::new(AtomicBool::new(true)),
        );
        assert_eq!(d.settings.broker, "http://127.0.0.1:9");
    }
}
