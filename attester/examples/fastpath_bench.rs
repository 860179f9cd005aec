//! The workload fast path, measured (a benchmark, not a test: it prints
//! figures and asserts nothing about time). One swtpm, one in-process broker
//! (SQLite, loopback HTTP) and two `writ-attester daemon` processes, as
//! deployed: one with prepared tokens (a launch that matches is a cache
//! hit), one with `per_launch_tokens` (every launch is a miss: a signed
//! request, i.e. one TPM signature, and a broker round trip). Every round starts each
//! scenario once, in turn, so drifts hit all of them alike; it prints each
//! scenario's median and the time it adds to starting the same program
//! directly.
//!
//! Programs: `true` (a small binary), the same binary with 50 MB appended
//! (hashing dominates), and a `#!/bin/sh` script. `run` without a daemon
//! takes a fresh quote; it and the cache hit are measured with
//! `SSL_CERT_DIR=/etc/ssl/certs` (≈ 150 certificate files) and without it.
//! Then a breakdown of the gated path: the library steps `run` and the
//! daemon take, timed in this process against two in-process daemons.
//!
//! ```sh
//! cargo build --release -p attester --bins --example fastpath_bench
//! TSS2_LOG=all+none target/release/examples/fastpath_bench [ROUNDS]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use swtpm_tests::Swtpm;
use verifier_lib::crypto::HashAlg;
use writ_attester::commands::{self, Settings};
use writ_attester::daemon::{AllowedCaller, Daemon, DaemonConfig};
use writ_attester::program::{measure_sealed_image, seal_program};
use writ_attester::tpm::{AkAlg, Tpm};
use writ_attester::workload_api::{self, WorkloadRequest};

const PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 16];
const CERT_DIR: &str = "/etc/ssl/certs";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    HashAlg::Sha256.digest(bytes).try_into().unwrap()
}

/// The `writ-attester` binary built with this example (same profile).
fn attester_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("writ-attester");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p attester --bins --example fastpath_bench",
        bin.display()
    );
    bin
}

/// `writ-run`, built next to `writ-attester`.
fn writ_run_binary() -> PathBuf {
    let bin = attester_binary().with_file_name("writ-run");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p attester --bins --example fastpath_bench",
        bin.display()
    );
    bin
}

struct Program {
    name: &'static str,
    path: PathBuf,
    digest: [u8; 32],
}

fn programs(dir: &Path) -> Vec<Program> {
    use std::os::unix::fs::PermissionsExt;
    let small = std::fs::read("/bin/true").unwrap();
    // An ELF binary runs with data appended; 50 MB of it to hash.
    let mut big = small.clone();
    let mut filler = vec![0u8; 50 * 1024 * 1024];
    aws_lc_rs::rand::fill(&mut filler).unwrap();
    big.extend_from_slice(&filler);
    let script = b"#!/bin/sh\nexit 0\n".to_vec();
    [("small", small), ("big", big), ("script", script)]
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, &bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            Program {
                name,
                path,
                digest: sha256(&bytes),
            }
        })
        .collect()
}

/// A daemon serving `socket` on a thread, with the request key registered;
/// its launchers are `writ-attester` and this benchmark (for the breakdown).
fn daemon(
    settings: &Settings,
    socket: &Path,
    launcher: &[u8; 32],
    per_launch: bool,
) -> Arc<Daemon> {
    let me = sha256(&std::fs::read("/proc/self/exe").unwrap());
    let uid = rustix::process::getuid().as_raw();
    let mut cfg = DaemonConfig {
        launchers: [launcher, &me]
            .into_iter()
            .map(|d| AllowedCaller {
                uid,
                exe_sha256: hex::encode(d),
            })
            .collect(),
        ..DaemonConfig::default()
    };
    cfg.daemon.socket = socket.to_owned();
    cfg.daemon.per_launch_tokens = per_launch;
    let d = Daemon::new(settings.clone(), cfg, Arc::new(AtomicBool::new(false)));
    assert_eq!(d.attest_once().unwrap().verdict, "affirming");
    let listener = d.bind().unwrap();
    let served = Arc::clone(&d);
    std::thread::spawn(move || served.serve(listener));
    d
}

/// A `writ-attester daemon` process serving `socket`, with its own copy of
/// the enrolled state (the daemons do not share state files); `run`
/// launches through it are its launcher. Stopped when dropped.
struct DaemonProcess(std::process::Child);

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon_process(
    attester: &Path,
    settings: &Settings,
    dir: &Path,
    name: &str,
    launchers: &[[u8; 32]],
    per_launch: bool,
) -> (DaemonProcess, PathBuf) {
    let state = dir.join(format!("{name}-state"));
    copy_dir(&settings.state_dir, &state);
    let socket = dir.join(format!("{name}.sock"));
    let uid = rustix::process::getuid().as_raw();
    let config = dir.join(format!("{name}.toml"));
    let mut text = format!(
        "[daemon]\nsocket = {socket:?}\ninterval_secs = 3600\nper_launch_tokens = {per_launch}\n"
    );
    for l in launchers {
        text.push_str(&format!(
            "\n[[launchers]]\nuid = {uid}\nexe_sha256 = \"{}\"\n",
            hex::encode(l)
        ));
    }
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(attester)
        .env_clear()
        .env("TSS2_LOG", "all+none")
        .args(["--broker", &settings.broker, "--tcti", &settings.tcti])
        .args(["--no-logs", "--state-dir"])
        .arg(&state)
        .args(["daemon", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (DaemonProcess(child), socket)
}

fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// One way of starting a program, timed from spawn to exit.
struct Scenario {
    label: String,
    program: usize,
    command: Box<dyn Fn() -> Command>,
    times: Vec<f64>,
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("ROUNDS"));
    let attester = attester_binary();
    let launcher = sha256(&std::fs::read(&attester).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let progs = programs(dir.path());

    let swtpm = Swtpm::start().unwrap();
    let pcrs: BTreeMap<u8, Vec<u8>> = Tpm::open(&swtpm.tcti())
        .unwrap()
        .pcr_read(&[(HashAlg::Sha256, PCRS.to_vec())])
        .unwrap()
        .remove(&HashAlg::Sha256)
        .unwrap();
    let allowed: Vec<(&str, [u8; 32])> = progs.iter().map(|p| (p.name, p.digest)).collect();
    let broker = TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy: policy_toml("fastpath", &pcrs, &allowed),
            ek_roots_pem: swtpm.ca_roots_pem(),
            bundled_manufacturers: false,
        },
        |_| {},
    )
    .unwrap();
    let state = dir.path().join("state");
    let settings = Settings {
        broker: broker.url(),
        failover: Default::default(),
        ca_cert: None,
        tcti: swtpm.tcti(),
        state_dir: state.clone(),
        issuer: "writ-broker".into(),
        logs: writ_attester::logs::LogSources::none(),
    };
    commands::enroll(&settings, AkAlg::EccP256).unwrap();
    // The breakdown's daemons, in this process.
    let breakdown_socket = dir.path().join("breakdown.sock");
    let warm = daemon(&settings, &breakdown_socket, &launcher, false);
    let cold = daemon(
        &settings,
        &dir.path().join("breakdown-cold.sock"),
        &launcher,
        true,
    );
    // The end-to-end daemons: separate processes of the same binary as
    // `run`, as a host runs them.
    let writ_run = writ_run_binary();
    let launchers = [launcher, sha256(&std::fs::read(&writ_run).unwrap())];
    let (_warm_process, warm_socket) =
        daemon_process(&attester, &settings, dir.path(), "warm", &launchers, false);
    let (_cold_process, cold_socket) =
        daemon_process(&attester, &settings, dir.path(), "cold", &launchers, true);
    let runtime = dir.path().join("rt");

    let run = |prog: &Program, socket: &Path, cert_dir: bool| {
        let (attester, runtime, url, tcti, state) = (
            attester.clone(),
            runtime.clone(),
            broker.url(),
            swtpm.tcti(),
            state.clone(),
        );
        let (path, name, socket) = (prog.path.clone(), prog.name, socket.to_owned());
        move || {
            let mut c = Command::new(&attester);
            c.env_clear()
                .args([
                    "--broker",
                    &url,
                    "--tcti",
                    &tcti,
                    "--no-logs",
                    "--state-dir",
                ])
                .arg(&state)
                .args(["run", "--workload", name, "--runtime-dir"])
                .arg(&runtime)
                .arg("--socket")
                .arg(&socket)
                .arg("--")
                .arg(&path)
                .env("TSS2_LOG", "all+none");
            if cert_dir {
                c.env("SSL_CERT_DIR", CERT_DIR);
            }
            c
        }
    };
    let fast = |prog: &Program, socket: &Path| {
        let (writ_run, runtime) = (writ_run.clone(), runtime.clone());
        let (path, name, socket) = (prog.path.clone(), prog.name, socket.to_owned());
        move || {
            let mut c = Command::new(&writ_run);
            c.env_clear()
                .args(["--workload", name, "--runtime-dir"])
                .arg(&runtime)
                .arg("--socket")
                .arg(&socket)
                .arg("--")
                .arg(&path);
            c
        }
    };
    let direct = |prog: &Program| {
        let path = prog.path.clone();
        move || {
            let mut c = Command::new(&path);
            c.env_clear();
            c
        }
    };
    let no_daemon = dir.path().join("no-daemon.sock");
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut add = |label: &str, program: usize, command: Box<dyn Fn() -> Command>| {
        scenarios.push(Scenario {
            label: label.to_owned(),
            program,
            command,
            times: Vec::new(),
        })
    };
    for (i, p) in progs.iter().enumerate() {
        add(&format!("{} direct", p.name), i, Box::new(direct(p)));
        add(
            &format!("{} run, daemon, cache hit", p.name),
            i,
            Box::new(run(p, &warm_socket, true)),
        );
    }
    for (i, p) in progs.iter().enumerate() {
        add(
            &format!("{} writ-run, daemon, cache hit", p.name),
            i,
            Box::new(fast(p, &warm_socket)),
        );
    }
    let small = &progs[0];
    add(
        "small writ-run, daemon, cache miss",
        0,
        Box::new(fast(small, &cold_socket)),
    );
    add(
        "small run, daemon, cache hit, no SSL_CERT_DIR",
        0,
        Box::new(run(small, &warm_socket, false)),
    );
    add(
        "small run, daemon, cache miss",
        0,
        Box::new(run(small, &cold_socket, true)),
    );
    add(
        "small run, no daemon (fresh quote)",
        0,
        Box::new(run(small, &no_daemon, true)),
    );
    add(
        "small run, no daemon, no SSL_CERT_DIR",
        0,
        Box::new(run(small, &no_daemon, false)),
    );

    // Warm up: the first launch of each program prepares its token (the
    // daemon processes may still be starting: retry for up to 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in &scenarios {
        loop {
            let out = (s.command)().stderr(Stdio::piped()).output().unwrap();
            // A `run` whose socket is not there yet takes a quote itself.
            let through_daemon = String::from_utf8_lossy(&out.stderr).contains(", via daemon");
            let wants_daemon = s.label.contains(" run, daemon") || s.label.contains("writ-run");
            if out.status.success() && through_daemon == wants_daemon {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {}",
                s.label,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for round in 0..rounds {
        let n = scenarios.len();
        for k in 0..n {
            // Rotate the order every round.
            let s = &mut scenarios[(k + round) % n];
            let mut c = (s.command)();
            c.stdout(Stdio::null()).stderr(Stdio::null());
            let t = Instant::now();
            let status = c.status().unwrap();
            s.times.push(ms(t.elapsed()));
            assert!(status.success(), "{} failed", s.label);
        }
    }

    println!(
        "Workload fast path: median of {rounds} interleaved starts each (ms); \
         added = median minus the same program started directly"
    );
    let baseline: BTreeMap<usize, f64> = scenarios
        .iter()
        .filter(|s| s.label.ends_with(" direct"))
        .map(|s| (s.program, median(s.times.clone())))
        .collect();
    println!("| scenario | median | added |");
    println!("|---|---:|---:|");
    for s in &scenarios {
        let m = median(s.times.clone());
        println!("| {} | {m:.2} | {:.2} |", s.label, m - baseline[&s.program]);
    }

    breakdown(&warm, &cold, &breakdown_socket, &progs, rounds);
}

/// The steps of a gated start, timed in this process (median of `rounds`).
fn breakdown(warm: &Daemon, cold: &Daemon, socket: &Path, progs: &[Program], rounds: usize) {
    let mut steps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut time = |step: &'static str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        steps.entry(step).or_default().push(ms(t.elapsed()));
    };
    let runtime = tempfile::tempdir().unwrap();
    let s = Settings {
        broker: "http://127.0.0.1:9".into(),
        failover: Default::default(),
        ca_cert: None,
        tcti: String::new(),
        state_dir: PathBuf::new(),
        issuer: "writ-broker".into(),
        logs: writ_attester::logs::LogSources::none(),
    };
    for _ in 0..rounds {
        for (p, seal, hash) in [
            (
                &progs[0],
                "1 small: open, copy into a sealed memfd (run)",
                "2 small: SHA-256 of the sealed image (daemon)",
            ),
            (
                &progs[1],
                "1 big (50 MB): open, copy into a sealed memfd (run)",
                "2 big (50 MB): SHA-256 of the sealed image (daemon)",
            ),
        ] {
            let mut sealed = None;
            time(seal, &mut || {
                sealed = Some(seal_program(p.path.to_str().unwrap()).unwrap());
            });
            let image = sealed.unwrap().image().try_clone_to_owned().unwrap();
            time(hash, &mut || {
                measure_sealed_image(&image).unwrap();
            });
        }
        let prog = seal_program(progs[0].path.to_str().unwrap()).unwrap();
        let digest = progs[0].digest;
        let mut answer = None;
        time(
            "3 socket round trip, cache hit (all daemon work included)",
            &mut || {
                answer = Some(
                    workload_api::request_launch(
                        socket,
                        &WorkloadRequest::Launch {
                            workload: "small".into(),
                            workload_digest: None,
                            cnf: None,
                        },
                        prog.image(),
                        Duration::from_secs(30),
                    )
                    .unwrap(),
                );
            },
        );
        time(
            "4 daemon work after hashing, cache hit (token_for)",
            &mut || {
                warm.token_for("small", &digest, None).unwrap();
            },
        );
        time(
            "4 daemon work after hashing, cache miss (token_for: key, TPM signature, broker)",
            &mut || {
                cold.token_for("small", &digest, None).unwrap();
            },
        );
        let t = answer.take().unwrap();
        let mut key = None;
        time("5 run: token + status list verification", &mut || {
            key = Some(
                writ_attester::launch::check_daemon_answer(&s.issuer, "small", &t)
                    .unwrap()
                    .1,
            );
        });
        let key = key.unwrap();
        time("6 run: key file (written once, then reused)", &mut || {
            writ_attester::workload_key::write_or_reuse_key(
                &runtime.path().join("writ"),
                "small-bench.pem",
                &key,
            )
            .unwrap();
        });
    }
    println!("\nBreakdown of the gated path (in-process, median ms of {rounds}):");
    println!("| step | median |");
    println!("|---|---:|");
    for (step, v) in steps {
        println!("| {step} | {:.3} |", median(v));
    }
    for (bin, name) in [
        (attester_binary(), "writ-attester"),
        (writ_run_binary(), "writ-run"),
    ] {
        let mut v = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let out = Command::new(&bin).arg("--version").output().unwrap();
            v.push(ms(start.elapsed()));
            assert!(out.status.success());
        }
        println!(
            "| 0 {name} process start + argument parsing (--version) | {:.3} |",
            median(v)
        );
    }
}
