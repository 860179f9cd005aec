//! The simulated hosts of a run: their software TPMs, the boot log they
//! all measured (one firmware build across the fleet), the workload they
//! ask tokens for, which of them the broker under test enrolled, and the
//! policy that affirms them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use crate::soft_tpm::ek_cert::TestCa;
use crate::soft_tpm::identities::Identities;
use crate::soft_tpm::{BootLog, ClockInfo, RequestKey, SoftTpm, SoftTpmError};

/// Events in every simulated boot log (the header not counted).
pub const LOG_EVENTS: usize = 100;
/// The firmware build every simulated host booted.
pub const FIRMWARE: &str = "2026.1";
/// The workload simulated hosts ask tokens for (its `aud`).
pub const WORKLOAD: &str = "loadgen-workload";
/// The policy id of [`policy_toml`].
pub const POLICY_ID: &str = "writ-loadgen";
/// Milliseconds subtracted from Unix time to make a TPM clock ("powered
/// for"): 2023-11-14, so clocks keep growing across runs.
const CLOCK_EPOCH_MS: u64 = 1_700_000_000_000;

/// SHA-256 of the simulated workload's executable.
pub fn workload_digest() -> [u8; 32] {
    Sha256::digest(b"writ-loadgen simulated workload executable").into()
}

/// What a quote (or a request-key signature) for a token request of the
/// simulated workload signs: SHA-256(nonce ‖ canonical request), the
/// broker's binding (`verifier_lib::request`).
pub fn token_request_binding(host_id: &str, nonce: &[u8], cnf: &[u8]) -> Vec<u8> {
    let digest = workload_digest();
    verifier_lib::request::TokenRequestBinding {
        host_id,
        workload: WORKLOAD,
        workload_digest: &digest,
        cnf_key: Some(cnf),
    }
    .quote_nonce(nonce)
}

/// The PCR values a simulated quote covers, in the API's form.
pub fn quoted_pcrs(log: &BootLog) -> verifier_lib::tpm::PcrValues {
    let bank = crate::soft_tpm::eventlog::LOG_PCRS
        .iter()
        .map(|&p| (p, log.pcrs[usize::from(p)].to_vec()))
        .collect();
    verifier_lib::tpm::PcrValues(
        [(verifier_lib::crypto::HashAlg::Sha256, bank)]
            .into_iter()
            .collect(),
    )
}

/// One simulated host.
#[derive(Debug)]
pub struct SimHost {
    pub index: usize,
    pub tpm: SoftTpm,
    /// Index of the source address its requests leave from.
    pub source: usize,
    host_id: OnceLock<String>,
    /// Its request key, once the broker registered it.
    request_key: OnceLock<RequestKey>,
    busy: AtomicBool,
}

impl SimHost {
    /// The registered request key, if any.
    pub fn request_key(&self) -> Option<&RequestKey> {
        self.request_key.get()
    }

    pub fn set_request_key(&self, key: RequestKey) {
        let _ = self.request_key.set(key);
    }

    /// The id the broker gave it at enrollment, if enrolled.
    pub fn host_id(&self) -> Option<&str> {
        self.host_id.get().map(String::as_str)
    }

    pub fn set_host_id(&self, id: String) {
        let _ = self.host_id.set(id);
    }

    /// The TPM's clock now: it only grows, across runs too.
    pub fn clock(&self) -> ClockInfo {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        ClockInfo {
            clock: now_ms.saturating_sub(CLOCK_EPOCH_MS),
            reset_count: 1,
            restart_count: 0,
            safe: true,
        }
    }
}

/// A host taken for one exchange; released when dropped.
#[derive(Debug)]
pub struct Claim {
    fleet: Arc<Fleet>,
    index: usize,
}

impl std::ops::Deref for Claim {
    type Target = SimHost;
    fn deref(&self) -> &SimHost {
        &self.fleet.hosts[self.index]
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.fleet.hosts[self.index]
            .busy
            .store(false, Ordering::Release);
    }
}

/// The simulated hosts and what they share.
#[derive(Debug)]
pub struct Fleet {
    pub hosts: Vec<SimHost>,
    pub ca: TestCa,
    pub ca_pem_path: PathBuf,
    pub log: BootLog,
    dir: PathBuf,
}

impl Fleet {
    /// Take host `index` for one exchange; `None` while another exchange
    /// of it runs (a TPM answers one command at a time, and its clock
    /// orders its quotes) or when there is no such host.
    pub fn claim(self: &Arc<Self>, index: usize) -> Option<Claim> {
        let host = self.hosts.get(index)?;
        host.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Claim {
                fleet: Arc::clone(self),
                index,
            })
    }

    /// `count` hosts from the identity cache in `dir` (generated once),
    /// spread round-robin over `sources` source addresses. Keys are loaded
    /// on every core.
    pub fn open(dir: &Path, count: usize, sources: usize, now: i64) -> Result<Fleet, SoftTpmError> {
        let ids = Identities::open(dir, count, now)?;
        let threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let chunk = ids.tpms.len().div_ceil(threads).max(1);
        let loaded: Vec<Result<Vec<SoftTpm>, SoftTpmError>> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .tpms
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().map(SoftTpm::load).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(SoftTpmError::Crypto {
                            step: "loading keys (thread)",
                        })
                    })
                })
                .collect()
        });
        let mut hosts = Vec::with_capacity(count);
        for tpm in loaded
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
        {
            let index = hosts.len();
            hosts.push(SimHost {
                index,
                tpm,
                source: index % sources.max(1),
                host_id: OnceLock::new(),
                request_key: OnceLock::new(),
                busy: AtomicBool::new(false),
            });
        }
        Ok(Fleet {
            hosts,
            ca: ids.ca,
            ca_pem_path: ids.ca_pem_path,
            log: BootLog::generate(LOG_EVENTS, FIRMWARE),
            dir: dir.to_path_buf(),
        })
    }

    /// The file recording which hosts the broker whose token key id is
    /// `broker_kid` enrolled (a new broker has a new key, hence a new file).
    fn enrolled_path(&self, broker_kid: &str) -> PathBuf {
        let safe: String = broker_kid
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(64)
            .collect();
        self.dir.join(format!("enrolled-{safe}.txt"))
    }

    /// Mark the hosts recorded as enrolled by that broker; returns how many.
    pub fn load_enrolled(&self, broker_kid: &str) -> usize {
        let Ok(text) = std::fs::read_to_string(self.enrolled_path(broker_kid)) else {
            return 0;
        };
        let mut n = 0;
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if let (Some(Ok(index)), Some(id)) =
                (parts.next().map(str::parse::<usize>), parts.next())
            {
                if let Some(h) = self.hosts.get(index) {
                    h.set_host_id(id.to_owned());
                    n += 1;
                }
            }
        }
        n
    }

    /// Record every enrolled host of this run (and those recorded before
    /// beyond this run's count).
    pub fn save_enrolled(&self, broker_kid: &str) -> std::io::Result<()> {
        let path = self.enrolled_path(broker_kid);
        let mut lines: std::collections::BTreeMap<usize, String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (i, id) = l.split_once(' ')?;
                Some((i.parse().ok()?, id.to_owned()))
            })
            .collect();
        for h in &self.hosts {
            if let Some(id) = h.host_id() {
                lines.insert(h.index, id.to_owned());
            }
        }
        let text: String = lines.iter().map(|(i, id)| format!("{i} {id}\n")).collect();
        std::fs::write(path, text)
    }
}

/// A policy that affirms the simulated fleet: PCRs 0–7 as the boot log
/// replays them, and the simulated workload.
pub fn policy_toml(log: &BootLog) -> String {
    let mut out = format!(
        "# Written by writ-loadgen: affirms its simulated hosts (software TPMs,\n\
         # firmware {FIRMWARE}, {events}-event boot log). For load tests only.\n\
         id = \"{POLICY_ID}\"\n\n[[groups]]\nname = \"loadgen\"\nhosts = [\"*\"]\n\
         pcr_bank = \"sha256\"\n[groups.pcrs]\n",
        events = log.events
    );
    for (pcr, value) in log.pcrs.iter().enumerate() {
        out.push_str(&format!("{pcr} = [\"{}\"]\n", hex::encode(value)));
    }
    out.push_str(&format!(
        "\n[[workloads]]\nname = \"{WORKLOAD}\"\ndigests = [\"{}\"]\n",
        hex::encode(workload_digest())
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolled_hosts_are_remembered_per_broker() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Fleet::open(dir.path(), 3, 2, 1_800_000_000).unwrap();
        assert_eq!(fleet.hosts[2].source, 0);
        fleet.hosts[1].set_host_id("tpm-b".into());
        fleet.save_enrolled("kid/1").unwrap();
        let again = Fleet::open(dir.path(), 3, 2, 1_800_000_000).unwrap();
        assert_eq!(again.load_enrolled("kid/1"), 1);
        assert_eq!(again.hosts[1].host_id(), Some("tpm-b"));
        assert_eq!(again.load_enrolled("other"), 0);
    }

    #[test]
    fn a_claimed_host_cannot_be_claimed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Arc::new(Fleet::open(dir.path(), 1, 1, 1_800_000_000).unwrap());
        let claim = fleet.claim(0).unwrap();
        assert_eq!(claim.index, 0);
        assert!(fleet.claim(0).is_none());
        drop(claim);
        assert!(fleet.claim(0).is_some());
        assert!(fleet.claim(1).is_none());
    }

    #[test]
    fn policy_lists_the_replayed_pcrs_and_the_workload() {
        let log = BootLog::generate(LOG_EVENTS, FIRMWARE);
        let p = policy_toml(&log);
        assert!(p.contains(&hex::encode(log.pcrs[7])));
        assert!(p.contains(&hex::encode(workload_digest())));
        let policy = verifier_lib::policy::Policy::parse_toml(&p).unwrap();
        assert_eq!(policy.id, POLICY_ID);
    }
}
