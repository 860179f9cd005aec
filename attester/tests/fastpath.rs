//! The workload fast path end to end on swtpm: `run` through the daemon
//! takes the daemon's prepared token and key and never talks to a broker
//! itself; a prepared token revoked in the status list is never handed out
//! again; and `writ-attester token` / `proof` get a shell script's request
//! through a real Writ gate with curl (the Python example of
//! docs/workload-socket.md too, when a python with `cwt` is given).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{fresh_pcrs, stderr, Host, Workload};
use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use verifier_lib::crypto::HashAlg;
use verifier_lib::pop::Window;
use verifier_lib::status::{ListCheck, VALID};
use verifier_lib::token::{Expectations, KeySet, TokenVerifier, VerifiedToken};
use writ_attester::commands;
use writ_attester::daemon::{AllowedCaller, AllowedWorkload, Daemon, DaemonConfig};
use writ_attester::tpm::AkAlg;
use writ_gate::{GateConfig, GateLayer, GateState, StatusFollower};

const ATTESTER: &str = env!("CARGO_BIN_EXE_writ-attester");
const WRIT_RUN: &str = env!("CARGO_BIN_EXE_writ-run");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    HashAlg::Sha256.digest(bytes).try_into().unwrap()
}

fn attester_digest() -> [u8; 32] {
    sha256(&std::fs::read(ATTESTER).unwrap())
}

fn broker(
    pcrs: &BTreeMap<u8, Vec<u8>>,
    workloads: &[(&str, [u8; 32])],
    roots: Vec<u8>,
) -> TestBroker {
    TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy: policy_toml("fast-1", pcrs, workloads),
            ek_roots_pem: roots,
            bundled_manufacturers: false,
        },
        |_| {},
    )
    .unwrap()
}

fn trusted_host(broker: &TestBroker) -> Host {
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    assert_eq!(
        commands::attest(&host.settings).unwrap().host_status,
        "trusted"
    );
    host
}

/// A daemon serving `socket` until the returned flag is set.
fn serve(host: &Host, mut cfg: DaemonConfig, socket: &Path) -> (Arc<Daemon>, Arc<AtomicBool>) {
    cfg.daemon.socket = socket.to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let d = Daemon::new(host.settings.clone(), cfg, Arc::clone(&stop));
    assert_eq!(d.attest_once().unwrap().verdict, "affirming");
    let listener = d.bind().unwrap();
    let served = Arc::clone(&d);
    std::thread::spawn(move || served.serve(listener));
    (d, stop)
}

/// A daemon serving `socket` whose one launcher is the executable `exe`
/// (for this uid), re-fetching the status list at every hand-out so a
/// revocation is seen at once.
fn serve_for_launcher(host: &Host, exe: &Path, socket: &Path) -> (Arc<Daemon>, Arc<AtomicBool>) {
    let mut cfg = DaemonConfig {
        launchers: vec![AllowedCaller {
            uid: me(),
            exe_sha256: hex::encode(sha256(&std::fs::read(exe).unwrap())),
        }],
        ..DaemonConfig::default()
    };
    cfg.daemon.status_max_age_ms = 0;
    serve(host, cfg, socket)
}

fn me() -> u32 {
    rustix::process::getuid().as_raw()
}

fn post_operator(url: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(url)
        .header(
            "authorization",
            format!("Bearer {}", swtpm_tests::broker::OPERATOR_TOKEN),
        )
        .header("content-type", "application/json")
        .body(r#"{"reason":"test"}"#)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// `run` through the daemon at `socket`, with a broker URL nothing listens
/// on: `run` must not need one.
fn run_via(socket: &Path, runtime: &Path, w: &Workload, state: &Path) -> Output {
    Command::new(ATTESTER)
        .env_clear()
        .env("TSS2_LOG", "all+none")
        .env("WRIT_TEST_MARKER", &w.marker)
        .args(["--broker", "http://127.0.0.1:1", "--state-dir"])
        .arg(state)
        .args(["run", "--env", "WRIT_TEST_MARKER", "--workload", "hello"])
        .arg("--runtime-dir")
        .arg(runtime)
        .arg("--socket")
        .arg(socket)
        .arg("--")
        .arg(&w.path)
        .output()
        .unwrap()
}

/// The token id `run` reports on stderr.
fn cti_of(out: &Output) -> String {
    let e = stderr(out);
    e.split("token ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token in {e}"))
        .to_owned()
}

/// Step 3 of issue #18: launches share the daemon's prepared token and key
/// (`run` needs no broker), and a prepared token revoked in the status list
/// is never handed out again: the next launch gets a fresh token, and none
/// once the host is revoked.
#[test]
fn revoked_prepared_tokens_are_never_handed_out() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("fastpath");
    let broker = broker(&pcrs, &[("hello", w.digest)], roots);
    let host = trusted_host(&broker);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attester.sock");
    let runtime = dir.path().join("rt");
    let (d, stop) = serve_for_launcher(&host, Path::new(ATTESTER), &socket);
    let empty_state = dir.path().join("no-state");

    let first = run_via(&socket, &runtime, &w, &empty_state);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("via daemon"), "{}", stderr(&first));
    assert!(w.ran());
    let second = run_via(&socket, &runtime, &w, &empty_state);
    assert!(second.status.success(), "{}", stderr(&second));
    let cti = cti_of(&first);
    assert_eq!(cti_of(&second), cti, "the prepared token is shared");
    let key_files = || std::fs::read_dir(&runtime).unwrap().count();
    assert_eq!(key_files(), 1, "one key file per prepared token");
    let a = d.token_for("hello", &w.digest, None).unwrap();
    assert_eq!(hex::encode(&a.cti), cti);

    // Revoke the prepared token: the daemon hands out a fresh one, with a
    // list that revokes the old one and shows the new one valid.
    let url = format!("{}/v1/tokens/{cti}/revoke", broker.url());
    assert_eq!(post_operator(&url), 200);
    let b = d.token_for("hello", &w.digest, None).unwrap();
    assert_ne!(b.cti, a.cti);
    let keys = KeySet::from_cose_key_set(b.keys.as_deref().unwrap()).unwrap();
    let verify = |t: &[u8]| {
        TokenVerifier::new(keys.clone(), Expectations::new("writ-broker", "hello"))
            .verify(t, now())
            .unwrap()
    };
    let list = verifier_lib::status::verify(
        b.status_list.as_deref().unwrap(),
        &keys,
        ListCheck::at(now(), 30),
    )
    .unwrap();
    assert_ne!(
        list.status_of(verify(&a.token).claims.status.as_ref())
            .unwrap(),
        VALID
    );
    assert_eq!(
        list.status_of(verify(&b.token).claims.status.as_ref())
            .unwrap(),
        VALID
    );
    let third = run_via(&socket, &runtime, &w, &empty_state);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(cti_of(&third), hex::encode(&b.cti));

    // Revoke the host: no token at all, and run refuses.
    let id = host.state().host_id;
    assert_eq!(
        post_operator(&format!("{}/v1/hosts/{id}/revoke", broker.url())),
        200
    );
    let e = d.token_for("hello", &w.digest, None).unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
    std::fs::remove_file(&w.marker).unwrap();
    let refused = run_via(&socket, &runtime, &w, &empty_state);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(!w.ran());
    stop.store(true, Ordering::SeqCst);
}

/// `writ-run`, the daemon-only launcher: listed by its own digest, it
/// starts the program with the daemon's token (no broker, no TPM library
/// linked); it refuses without a socket, for a workload the policy does not
/// list, and once the host is revoked; `writ-attester run` is not a
/// launcher of a daemon that lists only `writ-run`.
#[test]
fn writ_run_starts_through_the_daemon_and_refuses_without_it() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("writrun");
    let broker = broker(&pcrs, &[("hello", w.digest)], roots);
    let host = trusted_host(&broker);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attester.sock");
    let runtime = dir.path().join("rt");
    let (d, stop) = serve_for_launcher(&host, Path::new(WRIT_RUN), &socket);
    let writ_run = |socket: &Path, workload: &str| {
        Command::new(WRIT_RUN)
            .env_clear()
            .env("WRIT_TEST_MARKER", &w.marker)
            .args(["--env", "WRIT_TEST_MARKER", "--workload", workload])
            .arg("--runtime-dir")
            .arg(&runtime)
            .arg("--socket")
            .arg(socket)
            .arg("--")
            .arg(&w.path)
            .output()
            .unwrap()
    };

    let ok = writ_run(&socket, "hello");
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(w.ran());
    assert!(stderr(&ok).contains("via daemon"), "{}", stderr(&ok));
    let cti = cti_of(&ok);
    let shared = d.token_for("hello", &w.digest, None).unwrap();
    assert_eq!(hex::encode(&shared.cti), cti, "the daemon's prepared token");
    let again = writ_run(&socket, "hello");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(cti_of(&again), cti);

    // No daemon: refused, nothing started.
    std::fs::remove_file(&w.marker).unwrap();
    let none = writ_run(&dir.path().join("absent.sock"), "hello");
    assert_eq!(none.status.code(), Some(3), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("no attester daemon socket"),
        "{}",
        stderr(&none)
    );
    assert!(!w.ran());

    // A workload the policy does not list: the broker refuses, so does run.
    let other = writ_run(&socket, "other");
    assert_eq!(other.status.code(), Some(3), "{}", stderr(&other));
    assert!(!w.ran());

    // writ-attester is not a launcher of this daemon.
    let attester = run_via(&socket, &runtime, &w, &dir.path().join("no-state"));
    assert_eq!(attester.status.code(), Some(3), "{}", stderr(&attester));
    assert!(
        stderr(&attester).contains("caller_not_launcher"),
        "{}",
        stderr(&attester)
    );
    assert!(!w.ran());

    // The host revoked: refused.
    let id = host.state().host_id;
    assert_eq!(
        post_operator(&format!("{}/v1/hosts/{id}/revoke", broker.url())),
        200
    );
    let revoked = writ_run(&socket, "hello");
    assert_eq!(revoked.status.code(), Some(3), "{}", stderr(&revoked));
    assert!(!w.ran());
    stop.store(true, Ordering::SeqCst);
}

/// Step 3 of issue #18: a prepared token that was handed out is renewed at
/// 80 % of its lifetime, before it expires, by the renewal pass (not by the
/// next launch): the launch after it takes the new token without a broker
/// request.
#[test]
fn used_prepared_tokens_are_renewed_at_80_percent_of_their_lifetime() {
    let (pcrs, roots) = fresh_pcrs();
    let digest = [0x42; 32];
    let policy = format!(
        "{}lifetime_secs = 10\n",
        policy_toml("fast-renew", &pcrs, &[("hello", digest)])
    );
    let broker = TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy,
            ek_roots_pem: roots,
            bundled_manufacturers: false,
        },
        |_| {},
    )
    .unwrap();
    let host = trusted_host(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (d, stop) = serve(&host, DaemonConfig::default(), &dir.path().join("s.sock"));
    let tokens = || broker.block_on(broker.store.counts()).unwrap().tokens;
    let a = d.token_for("hello", &digest, None).unwrap();
    assert_eq!(a.renew_at, a.expires_at - 2, "80 % of 10 s");
    let minted = tokens();
    // Before renew_at: nothing is due.
    d.renew_due();
    assert_eq!(tokens(), minted);
    while now() < a.renew_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    d.renew_due();
    assert!(now() < a.expires_at, "renewed before expiry");
    assert_eq!(tokens(), minted + 1, "one renewal");
    let b = d.token_for("hello", &digest, None).unwrap();
    assert_ne!(b.cti, a.cti);
    assert_ne!(b.key_pem, a.key_pem, "a new key with the new token");
    assert_eq!(tokens(), minted + 1, "the launch after renewal is a hit");
    stop.store(true, Ordering::SeqCst);
}

/// A relying party behind the Writ gate on a loopback port, following the
/// broker's status list.
struct RelyingParty {
    url: String,
    rt: tokio::runtime::Runtime,
    state: Arc<GateState>,
}

fn relying_party(keys: KeySet, aud: &str, broker: &str) -> RelyingParty {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = GateConfig {
        verifier: TokenVerifier::new(keys, Expectations::new("writ-broker", aud)),
        pop_window: Window::default(),
        max_status_age_secs: 60,
        allow_offline: Default::default(),
        replay_capacity: 1000,
        replay_capacity_per_key: 1000,
        max_body_bytes: 1 << 20,
    };
    let state = GateState::new(config, writ_gate::system_now()).unwrap();
    let app = axum::Router::new()
        .route(
            "/work",
            axum::routing::post(
                |axum::Extension(t): axum::Extension<VerifiedToken>, body: String| async move {
                    format!("{} sent {body}", t.claims.aud)
                },
            ),
        )
        .layer(GateLayer::new(Arc::clone(&state)));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let follower = StatusFollower {
        brokers: vec![broker.to_owned()],
        mode: writ_gate::FollowMode::Poll,
        poll_interval: Duration::from_millis(200),
        leeway_secs: 30,
    };
    rt.spawn(follower.run(Arc::clone(&state)));
    RelyingParty {
        url: format!("http://{addr}"),
        rt,
        state,
    }
}

impl RelyingParty {
    fn wait_for_status(&self) {
        for _ in 0..200 {
            if self.state.status_version().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gate never received a status list");
    }
}

fn sh(script: &str, envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-ceu").arg(script);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A token and key for a script from `writ-attester token`, and a proof for
/// each request from `writ-attester proof`, take a curl request through a
/// real Writ gate; the same proof again is a replay and is refused, and so
/// is a proof for another body.
#[test]
fn token_and_proof_commands_take_curl_through_a_writ_gate() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker(&pcrs, &[("scripted", attester_digest())], roots);
    let host = trusted_host(&broker);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attester.sock");
    let cfg = DaemonConfig {
        workloads: vec![AllowedWorkload {
            name: "scripted".into(),
            uid: me(),
            exe_sha256: hex::encode(attester_digest()),
        }],
        ..DaemonConfig::default()
    };
    let (_d, stop) = serve(&host, cfg, &socket);
    let rp = relying_party(host.client().key_set().unwrap(), "scripted", &broker.url());
    rp.wait_for_status();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"job":1}"#).unwrap();
    let url = format!("{}/work", rp.url);
    let socket_s = socket.to_str().unwrap().to_owned();
    let rt = dir.path().join("rt");
    let envs = [
        ("ATTESTER", ATTESTER),
        ("WRIT_SOCKET", socket_s.as_str()),
        ("WRIT_RUNTIME_DIR", rt.to_str().unwrap()),
        ("URL", url.as_str()),
        ("BODY", body.to_str().unwrap()),
    ];
    let out = sh(
        r#"TOKEN=$("$ATTESTER" token --workload scripted)
           POP=$("$ATTESTER" proof --workload scripted --method POST --url "$URL" --body "$BODY")
           curl -sS -w '\n%{http_code}\n' -H "Authorization: Writ $TOKEN" -H "$POP" \
                -H 'content-type: application/json' --data-binary "@$BODY" "$URL"
           # The same proof again: a replay.
           curl -sS -w '\n%{http_code}\n' -H "Authorization: Writ $TOKEN" -H "$POP" \
                --data-binary "@$BODY" "$URL"
           # A proof for an empty body, sent with this body.
           POP=$("$ATTESTER" proof --workload scripted --method POST --url "$URL")
           curl -sS -w '\n%{http_code}\n' -H "Authorization: Writ $TOKEN" -H "$POP" \
                --data-binary "@$BODY" "$URL""#,
        &envs,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], r#"scripted sent {"job":1}"#, "{text}");
    assert_eq!(lines[1], "200", "{text}");
    assert!(lines[2].contains("pop_replayed"), "{text}");
    assert_eq!(lines[3], "401", "{text}");
    assert!(lines[4].contains("pop_"), "{text}");
    assert_eq!(lines[5], "401", "{text}");
    // The key and token files are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["scripted.pem", "scripted.token"] {
        let mode = std::fs::metadata(rt.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // Without a token, proof says so (typed, exit 2) and prints nothing.
    let out = Command::new(ATTESTER)
        .env_clear()
        .args(["proof", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("no token"), "{}", stderr(&out));
    drop(rp.rt);
    stop.store(true, Ordering::SeqCst);
}

/// A python with python-cwt 3.3.0: WRIT_TEST_PYTHON if set, else a
/// virtualenv made (once, then reused) in cargo's test scratch directory
/// with the package from PyPI. Fails, naming the step, when it cannot be
/// made (no `python3 -m venv`, no network to PyPI).
fn python_with_cwt() -> PathBuf {
    if let Some(p) = std::env::var_os("WRIT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-cwt");
    let python = venv.join("bin/python");
    let has_cwt = |p: &Path| {
        Command::new(p)
            .args(["-c", "import cwt"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_cwt(&python) {
        if !python.exists() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap();
            assert!(made.success(), "python3 -m venv {} failed", venv.display());
        }
        let installed = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "cwt==3.3.0",
            ])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install cwt==3.3.0 failed");
    }
    python
}

/// The Python example of docs/workload-socket.md, run by a python with
/// `cwt` ([`python_with_cwt`]): it asks the daemon's socket for a token and
/// verifies it with python-cwt under the key set the daemon hands over.
#[test]
fn python_example_gets_and_verifies_a_token() {
    let python = python_with_cwt();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/writ_token.py");
    let python_exe = std::fs::canonicalize(
        Command::new(&python)
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap(),
    )
    .unwrap();
    let interpreter = sha256(&std::fs::read(&python_exe).unwrap());
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker(&pcrs, &[("py", interpreter)], roots);
    let host = trusted_host(&broker);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attester.sock");
    let cfg = DaemonConfig {
        workloads: vec![AllowedWorkload {
            name: "py".into(),
            uid: me(),
            exe_sha256: hex::encode(interpreter),
        }],
        ..DaemonConfig::default()
    };
    let (_d, stop) = serve(&host, cfg, &socket);
    let out = Command::new(&python)
        .arg(&example)
        .args(["--socket", socket.to_str().unwrap(), "--workload", "py"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let claims: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(claims["aud"], "py", "{text}");
    assert_eq!(claims["sub"], host.state().host_id, "{text}");
    assert_eq!(
        claims["workload_digest"],
        hex::encode(interpreter),
        "{text}"
    );
    stop.store(true, Ordering::SeqCst);
}
