//! `writ-broker serve` with `server.tls_cert`/`tls_key`: the real binary
//! loads a PEM certificate and private key and answers over HTTPS.
//!
//! Regression test for the move from axum-server 0.7 (PEM parsing by the
//! unmaintained `rustls-pemfile`, RUSTSEC-2025-0134) to axum-server 0.9
//! (PEM parsing by `rustls-pki-types`): both private-key encodings that
//! `openssl` writes (PKCS#8 and SEC1) must still load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the broker on drop, also when an assertion fails.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Self-signed P-256 certificate for 127.0.0.1 in `cert.pem`, its key as
/// PKCS#8 in `key-pkcs8.pem` and as SEC1 in `key-sec1.pem`.
fn make_cert(dir: &Path) {
    let key8 = dir.join("key-pkcs8.pem");
    let key1 = dir.join("key-sec1.pem");
    let cert = dir.join("cert.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key8.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        "2",
        "-subj",
        "/CN=writ-broker test",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        // An end-entity certificate (webpki refuses a CA certificate as the
        // server's): openssl's default for `req -x509` is CA:TRUE.
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]);
    openssl(&[
        "ec",
        "-in",
        key8.to_str().unwrap(),
        "-out",
        key1.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&key8)
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    assert!(std::fs::read_to_string(&key1)
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
}

fn start(dir: &Path, key: &str) -> (Broker, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = dir.join(key.replace('.', "-"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("policy.toml"),
        // TLS is under test, not appraisal: the group says it constrains nothing.
        "id = \"tls-test\"\n\n[[groups]]\nname = \"default\"\nhosts = [\"*\"]\n\
         dangerous_accept_any_measurements = true\n",
    )
    .unwrap();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\
         [storage]\nurl = \"sqlite://{db}\"\n[keys]\ndir = \"{keys}\"\n[policy]\nfile = \"{policy}\"\n\
         [trust]\nbundled_manufacturers = false\n",
        cert = dir.join("cert.pem").display(),
        key = dir.join(key).display(),
        db = state.join("writ.db").display(),
        keys = state.join("keys").display(),
        policy = state.join("policy.toml").display(),
    );
    std::fs::write(state.join("broker.toml"), cfg).unwrap();
    let log = std::fs::File::create(state.join("broker.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .arg("serve")
        .arg("--config")
        .arg(state.join("broker.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (Broker(child), port)
}

/// Polls `GET https://127.0.0.1:{port}/healthz`, trusting only `cert.pem`.
fn healthz_over_tls(broker: &mut Broker, dir: &Path, port: u16, key: &str) -> u16 {
    let root =
        reqwest::Certificate::from_pem(&std::fs::read(dir.join("cert.pem")).unwrap()).unwrap();
    let https = reqwest::blocking::Client::builder()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let log = dir.join(key.replace('.', "-")).join("broker.log");
    let mut last_error = String::new();
    for _ in 0..300 {
        if let Ok(Some(status)) = broker.0.try_wait() {
            panic!(
                "broker with {key} exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        match https
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
        {
            Ok(resp) => return resp.status().as_u16(),
            Err(e) => last_error = format!("{e:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "broker with {key} did not answer over HTTPS ({last_error}): {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn serves_https_with_pkcs8_and_sec1_keys() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path());
    for key in ["key-pkcs8.pem", "key-sec1.pem"] {
        let (mut broker, port) = start(dir.path(), key);
        assert_eq!(healthz_over_tls(&mut broker, dir.path(), port, key), 200);
        // The port speaks TLS only: a plain-HTTP request gets no response.
        let plain = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        assert!(plain
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .is_err());
    }
}
