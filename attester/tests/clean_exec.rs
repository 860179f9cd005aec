//! `writ-attester run` executes exactly the bytes it hashed, in a clean
//! environment: the caller's variables (`LD_PRELOAD` included) never reach
//! the workload unless named with `--env`, loader variables need
//! `--dangerous-allow-loader-env` even then, and a program rewritten in
//! place (mtime reset) between measurement and exec still runs the measured
//! bytes. Workloads are `#!/bin/sh` scripts, so each test also shows that a
//! shebang script runs from its sealed image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use support::{broker_for, fresh_pcrs, stderr, Host};
use swtpm_tests::broker::TestBroker;
use verifier_lib::crypto::HashAlg;
use writ_attester::commands;
use writ_attester::daemon::{Daemon, DaemonConfig};
use writ_attester::program::{resolve_program, WorkloadEnv, IMAGE_SEALS};
use writ_attester::tpm::AkAlg;
use writ_attester::workload_api::{WorkloadRequest, WorkloadResponse};

/// A shell script in its own directory; returns (dir, path, digest).
fn script(name: &str, body: &str) -> (tempfile::TempDir, PathBuf, [u8; 32]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let digest = HashAlg::Sha256.digest(body.as_bytes()).try_into().unwrap();
    (dir, path, digest)
}

/// Overwrite `path` in place (same inode, same size) and put its mtime back.
fn rewrite_in_place(path: &Path, body: &str) {
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(
        before.len(),
        body.len() as u64,
        "same size, or size gives it away"
    );
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(body.as_bytes()).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        (
            after.dev(),
            after.ino(),
            after.size(),
            after.mtime(),
            after.mtime_nsec()
        ),
        (
            before.dev(),
            before.ino(),
            before.size(),
            before.mtime(),
            before.mtime_nsec()
        ),
        "the old dev/inode/size/mtime check cannot see this rewrite"
    );
    assert_eq!(std::fs::read_to_string(path).unwrap(), body);
}

fn trusted_host(broker: &TestBroker) -> Host {
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.host_status, "trusted", "{a:?}");
    host
}

/// `writ-attester run` with extra flags before `--`, the caller environment
/// `envs`, no daemon (or the one at `socket`).
fn run(
    host: &Host,
    dir: &Path,
    flags: &[&str],
    socket: Option<&Path>,
    program: &Path,
    envs: &[(&str, &str)],
) -> Output {
    let runtime = dir.join("rt");
    let no_daemon = dir.join("no-daemon.sock");
    let mut args = vec![
        "run",
        "--workload",
        "printenv",
        "--runtime-dir",
        runtime.to_str().unwrap(),
        "--socket",
        socket.unwrap_or(&no_daemon).to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    args.extend(["--", program.to_str().unwrap()]);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_writ-attester"));
    cmd.arg("--broker")
        .arg(&host.settings.broker)
        .arg("--tcti")
        .arg(&host.settings.tcti)
        .arg("--state-dir")
        .arg(host.state_dir.path())
        .args(&args)
        .env("TSS2_LOG", "all+none");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The `NAME=VALUE` lines a workload printed.
fn printed_env(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

const PRINTENV: &str = "#!/bin/sh\n/usr/bin/env\n";

#[test]
fn the_caller_environment_does_not_reach_the_workload() {
    let (pcrs, roots) = fresh_pcrs();
    let (dir, path, digest) = script("printenv.sh", PRINTENV);
    let broker = broker_for(&pcrs, &[("printenv", digest)], roots);
    let host = trusted_host(&broker);
    // A preload object that does not exist: the loader only warns, but on
    // the old code the workload's environment carried it.
    let caller = [
        ("LD_PRELOAD", "/nonexistent/writ-inject.so"),
        ("LD_LIBRARY_PATH", "/nonexistent/writ-lib"),
        ("WRIT_TEST_SECRET", "caller-only"),
        ("WRIT_TEST_ALLOWED", "named"),
    ];

    let out = run(&host, dir.path(), &[], None, &path, &caller);
    assert!(out.status.success(), "{}", stderr(&out));
    let env = printed_env(&out);
    for name in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "WRIT_TEST_SECRET",
        "WRIT_TEST_ALLOWED",
        "HOME",
        "PATH",
    ] {
        assert!(
            !env.iter().any(|l| l.starts_with(&format!("{name}="))),
            "{name} reached the workload: {env:?}"
        );
    }
    assert!(env.iter().any(|l| l.starts_with("WRIT_TOKEN=")), "{env:?}");
    assert!(env.iter().any(|l| l.starts_with("WRIT_KEY=")), "{env:?}");

    // Named variables pass: from the caller, or with a value.
    let out = run(
        &host,
        dir.path(),
        &[
            "--env",
            "WRIT_TEST_ALLOWED",
            "--env",
            "MODE=fast",
            "--env",
            "WRIT_TEST_UNSET",
        ],
        None,
        &path,
        &caller,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let env = printed_env(&out);
    assert!(
        env.contains(&"WRIT_TEST_ALLOWED=named".to_owned()),
        "{env:?}"
    );
    assert!(env.contains(&"MODE=fast".to_owned()), "{env:?}");
    assert!(
        !env.iter().any(|l| l.starts_with("WRIT_TEST_UNSET=")),
        "{env:?}"
    );
    assert!(!env.iter().any(|l| l.starts_with("LD_PRELOAD=")), "{env:?}");
    assert!(
        !env.iter().any(|l| l.starts_with("WRIT_TEST_SECRET=")),
        "{env:?}"
    );
}

#[test]
fn loader_variables_pass_only_with_the_dangerous_switch() {
    let (pcrs, roots) = fresh_pcrs();
    let (dir, path, digest) = script("printenv.sh", PRINTENV);
    let broker = broker_for(&pcrs, &[("printenv", digest)], roots);
    let host = trusted_host(&broker);
    let caller = [("LD_LIBRARY_PATH", "/nonexistent/writ-lib")];

    // Named but not allowed: refused before any token is requested.
    for flags in [
        &["--env", "LD_LIBRARY_PATH"][..],
        &["--env", "LD_PRELOAD=/x.so"][..],
    ] {
        let out = run(&host, dir.path(), flags, None, &path, &caller);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("dangerous-allow-loader-env"),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
    }
    // run's own variables cannot be overridden.
    let out = run(
        &host,
        dir.path(),
        &["--env", "WRIT_TOKEN=forged"],
        None,
        &path,
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let tokens = broker.block_on(broker.store.counts()).unwrap().tokens;
    assert_eq!(tokens, 0, "no token for a refused command line");

    let out = run(
        &host,
        dir.path(),
        &["--env", "LD_LIBRARY_PATH", "--dangerous-allow-loader-env"],
        None,
        &path,
        &caller,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(printed_env(&out).contains(&"LD_LIBRARY_PATH=/nonexistent/writ-lib".to_owned()));
}

/// A stand-in daemon socket: on the launch request (the program is sealed
/// by then), rewrite the program in place with its mtime reset, then hash
/// the sealed image the launcher sent and answer with a real token for that
/// digest; returns the digest.
fn rewriting_daemon(
    host: &Host,
    socket: &Path,
    program: PathBuf,
    replacement: &'static str,
) -> std::thread::JoinHandle<[u8; 32]> {
    let listener = UnixListener::bind(socket).unwrap();
    let daemon = Daemon::new(
        host.settings.clone(),
        DaemonConfig::default(),
        Arc::new(AtomicBool::new(false)),
    );
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let (line, image) = writ_attester::workload_api::read_request(&stream).unwrap();
        let req: WorkloadRequest = serde_json::from_slice(&line).unwrap();
        let WorkloadRequest::Launch { workload, cnf, .. } = req else {
            panic!(
                "expected a launch request, got {}",
                String::from_utf8_lossy(&line)
            );
        };
        rewrite_in_place(&program, replacement);
        let digest = writ_attester::program::measure_sealed_image(&image.unwrap()).unwrap();
        let token = daemon
            .token_for(&workload, &digest, cnf.as_deref())
            .unwrap();
        let mut body = serde_json::to_vec(&WorkloadResponse::Token(token)).unwrap();
        body.push(b'\n');
        (&stream).write_all(&body).unwrap();
        digest
    })
}

#[test]
fn a_program_rewritten_in_place_after_measurement_runs_the_measured_bytes() {
    const MEASURED: &str = "#!/bin/sh\necho measured-bytes-ran\n";
    const REPLACED: &str = "#!/bin/sh\necho replaced-bytes-ran\n";
    let (pcrs, roots) = fresh_pcrs();
    let (dir, path, digest) = script("workload.sh", MEASURED);
    let broker = broker_for(&pcrs, &[("printenv", digest)], roots);
    let host = trusted_host(&broker);
    let socket = dir.path().join("daemon.sock");
    let server = rewriting_daemon(&host, &socket, path.clone(), REPLACED);

    let out = run(&host, dir.path(), &[], Some(&socket), &path, &[]);
    let measured = server.join().unwrap();
    assert_eq!(measured, digest, "the launcher sealed the original bytes");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("via daemon"), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout, "measured-bytes-ran\n",
        "ran other bytes than measured"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), REPLACED);
}

#[test]
fn the_executed_image_is_the_sealed_hashed_copy() {
    let (_dir, path, digest) = script("argv.sh", "#!/bin/sh\necho \"one:$1 two:$2\"\n");
    let program = resolve_program(path.to_str().unwrap()).unwrap();
    assert_eq!(program.digest, digest);
    assert_eq!(program.image_seals().unwrap(), IMAGE_SEALS);

    // Truncating, rewriting in place, even deleting the file changes nothing.
    rewrite_in_place(&path, "#!/bin/sh\necho \"ONE:$1 TWO:$2\"\n");
    let env = WorkloadEnv::default();
    let out = program
        .command(&["a".into(), "b".into()], &env)
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one:a two:b\n");
    std::fs::remove_file(&path).unwrap();
    let out = program.command(&[], &env).unwrap().output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one: two:\n");

    // An ELF binary runs from its image too, with argv[0] its path.
    let echo = resolve_program("/bin/echo").unwrap();
    let out = echo
        .command(&["hello".into()], &env)
        .unwrap()
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    // What the kernel runs is the memory file, not the path.
    let readlink = resolve_program("/bin/readlink").unwrap();
    let out = readlink
        .command(&["/proc/self/exe".into()], &env)
        .unwrap()
        .output()
        .unwrap();
    let exe = String::from_utf8_lossy(&out.stdout);
    assert!(exe.starts_with("/memfd:writ-workload"), "{exe}");
}
