//! Shared set-up for the end-to-end tests: a real swtpm per host, a real
//! in-process broker on a loopback port, and the real attester (library
//! commands, and the `writ-attester` binary for `run`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use swtpm_tests::broker::{policy_toml, Backend, BrokerOptions, TestBroker};
use swtpm_tests::Swtpm;
use verifier_lib::api::{ChallengeRequest, ChallengeResponse, TpmEvidence};
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{event_type, EventLog};
use verifier_lib::tpm::PcrValues;
use writ_attester::client::BrokerClient;
use writ_attester::commands::Settings;
use writ_attester::state::AttesterState;
use writ_attester::tpm::{AkBlob, Tpm};

/// PCRs the test policy constrains (sha256 bank). 16 is the debug PCR the
/// tests extend to change a host's measurements.
pub const POLICY_PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 16];

/// One attesting host: its own swtpm and attester state directory.
pub struct Host {
    pub swtpm: Swtpm,
    pub state_dir: tempfile::TempDir,
    pub settings: Settings,
}

impl Host {
    pub fn new(broker_url: &str) -> Host {
        Self::with(broker_url, Swtpm::start().expect("swtpm"))
    }

    /// A host whose TPM differs from every other host's (its own EK).
    pub fn distinct(broker_url: &str) -> Host {
        Self::with(broker_url, Swtpm::start_distinct().expect("swtpm"))
    }

    fn with(broker_url: &str, swtpm: Swtpm) -> Host {
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

    pub fn tpm(&self) -> Tpm {
        Tpm::open(&self.swtpm.tcti()).expect("open tpm")
    }

    /// Current sha256 values of the policy PCRs.
    pub fn pcrs(&self) -> BTreeMap<u8, Vec<u8>> {
        let v = self
            .tpm()
            .pcr_read(&[(HashAlg::Sha256, POLICY_PCRS.to_vec())])
            .unwrap();
        v.get(&HashAlg::Sha256).cloned().unwrap()
    }

    pub fn extend_pcr16(&self) {
        self.tpm()
            .pcr_extend(16, HashAlg::Sha256, &[0x5a; 32])
            .unwrap();
    }

    pub fn state(&self) -> AttesterState {
        AttesterState::load(self.state_dir.path()).unwrap()
    }

    pub fn client(&self) -> BrokerClient {
        BrokerClient::new(&self.settings.broker, None).unwrap()
    }

    pub fn challenge(&self) -> ChallengeResponse {
        self.client()
            .post(
                "/v1/challenge",
                &ChallengeRequest {
                    host_id: self.state().host_id,
                },
            )
            .unwrap()
    }

    /// A quote over the challenge's selection, signed by `ak` (default: the enrolled AK).
    pub fn quote(
        &self,
        ch: &ChallengeResponse,
        qualifying: &[u8],
        ak: Option<&AkBlob>,
    ) -> TpmEvidence {
        let state = self.state();
        let mut tpm = self.tpm();
        let ek = tpm.create_ek(state.ek_alg).unwrap();
        let sel: Vec<(HashAlg, Vec<u8>)> = ch
            .pcr_selection
            .iter()
            .map(|b| (b.bank, b.pcrs.clone()))
            .collect();
        let q = tpm
            .quote(&ek, ak.unwrap_or(&state.ak), qualifying, &sel)
            .unwrap();
        tpm.flush_ek(ek).unwrap();
        TpmEvidence {
            attest: q.attest,
            signature: q.signature,
            pcrs: PcrValues(q.pcrs),
            eventlog: None,
            ima: None,
            ima_offset: 0,
        }
    }

    /// Run `writ-attester` (the binary) with this host's settings. `run`
    /// starts workloads with a clean environment: the test marker variable
    /// is passed on explicitly (`--env WRIT_TEST_MARKER`).
    pub fn attester(&self, args: &[&str], envs: &[(&str, &Path)]) -> Output {
        let mut args = args.to_vec();
        if args.first() == Some(&"run") {
            args.splice(1..1, ["--env", "WRIT_TEST_MARKER"]);
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_writ-attester"));
        cmd.arg("--broker")
            .arg(&self.settings.broker)
            .arg("--tcti")
            .arg(&self.settings.tcti)
            .arg("--state-dir")
            .arg(self.state_dir.path())
            .args(&args)
            .env("TSS2_LOG", "all+none");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// A workload: a script that records that it ran and the token it got.
pub struct Workload {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub digest: [u8; 32],
    pub marker: PathBuf,
}

impl Workload {
    pub fn new(tag: &str) -> Workload {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("workload-{tag}.sh"));
        let body = format!(
            "#!/bin/sh\n# writ test workload {tag}\nprintf '%s' \"$WRIT_TOKEN\" > \"$WRIT_TEST_MARKER\"\necho \"workload {tag} ran\"\n"
        );
        std::fs::write(&path, body.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let digest: [u8; 32] = HashAlg::Sha256.digest(body.as_bytes()).try_into().unwrap();
        let marker = dir.path().join("ran");
        Workload {
            dir,
            path,
            digest,
            marker,
        }
    }

    pub fn ran(&self) -> bool {
        self.marker.exists()
    }

    /// `writ-attester run --workload NAME -- <script>` on `host`.
    pub fn run_on(&self, host: &Host, name: &str) -> Output {
        host.attester(
            &["run", "--workload", name, "--", self.path.to_str().unwrap()],
            &[("WRIT_TEST_MARKER", &self.marker)],
        )
    }
}

/// A broker whose policy accepts `host`'s current PCRs and runs `workloads`.
pub fn broker_for(
    host_pcrs: &BTreeMap<u8, Vec<u8>>,
    workloads: &[(&str, [u8; 32])],
    ek_roots_pem: Vec<u8>,
) -> TestBroker {
    broker_on(Backend::Sqlite, host_pcrs, workloads, ek_roots_pem)
}

/// [`broker_for`] with its store on `backend`.
pub fn broker_on(
    backend: Backend,
    host_pcrs: &BTreeMap<u8, Vec<u8>>,
    workloads: &[(&str, [u8; 32])],
    ek_roots_pem: Vec<u8>,
) -> TestBroker {
    TestBroker::start_on(
        backend,
        BrokerOptions {
            policy: policy_toml("e2e-1", host_pcrs, workloads),
            ek_roots_pem,
            bundled_manufacturers: false,
        },
    )
    .unwrap()
}

/// The PCR values of a freshly started swtpm (all hosts start identical).
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

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Vector files of one kind under `verifier-lib/tests/vectors`.
pub fn vectors(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../verifier-lib/tests/vectors")
        .join(kind)
}

/// The vector logs a swtpm at locality 0 can reproduce: a sha256 bank, no
/// StartupLocality event (swtpm starts at locality 0), PCRs 0-15 only.
pub fn reproducible_logs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for src in std::fs::read_dir(vectors("eventlog")).unwrap() {
        for case in std::fs::read_dir(src.unwrap().path()).unwrap() {
            let p = case.unwrap().path().join("binary_bios_measurements");
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let log = EventLog::parse(&bytes).unwrap();
            let replayed = log.replay();
            let ok = log.banks().contains(&HashAlg::Sha256)
                && replayed.startup_locality.is_none()
                && replayed.measured_pcrs().iter().all(|p| *p <= 15);
            if ok {
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 6, "only {} reproducible logs", out.len());
    out
}

/// Extend every (non-EV_NO_ACTION) event's sha256 digest into the host's TPM.
pub fn extend_log(host: &Host, log: &EventLog) {
    let mut tpm = host.tpm();
    for e in &log.events {
        if e.event_type == event_type::EV_NO_ACTION {
            continue;
        }
        if let Some(d) = e.digest(HashAlg::Sha256) {
            tpm.pcr_extend(u8::try_from(e.pcr).unwrap(), HashAlg::Sha256, d)
                .unwrap();
        }
    }
}
