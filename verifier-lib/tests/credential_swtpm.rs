//! End to end against a software TPM (swtpm + tpm2-tools), for the RSA-2048
//! EK and the P-384 high-range EK (SHA-384 nameAlg, AES-256) that
//! `swtpm_setup --create-ek-cert` provisions:
//!
//! 1. read the EK certificate from NV, parse it and verify its chain to the
//!    swtpm local CA root at a time inside its validity;
//! 2. check that the certified key is the EK the TPM reports (`check_ek_public`);
//! 3. create an ECC AK under the EK, make a credential for the AK's name with
//!    `make_credential` from the *certified* key, and recover it with
//!    `tpm2_activatecredential`; a credential made for another name fails.
//!
//! Each test runs its own swtpm (own XDG_CONFIG_HOME, state dir and ports)
//! and shuts it down when done. Dev-only: the library itself spawns nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use verifier_lib::credential::{make_credential, CredentialTarget};
use verifier_lib::crypto::{Curve, HashAlg, PublicKey};
use verifier_lib::ekcert::{
    check_ek_public, parse_ek_certificate, verify_ek_chain, EkCertError, TrustStore,
};

struct Swtpm {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (swtpm, swtpm-tools and tpm2-tools must be installed)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Swtpm {
    fn start() -> Swtpm {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().join("xdg");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&xdg).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let uid = run(Command::new("id").arg("-u"));
        let mut config = Command::new("swtpm_setup");
        config
            .env("XDG_CONFIG_HOME", &xdg)
            .arg("--create-config-files");
        if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
            config.arg("root");
        }
        run(&mut config);
        run(Command::new("swtpm_setup")
            .env("XDG_CONFIG_HOME", &xdg)
            .args(["--tpm2", "--create-ek-cert", "--overwrite", "--tpmstate"])
            .arg(&state));
        for _ in 0..5 {
            let port = free_port_pair();
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--server"])
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", state.display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("swtpm must be installed");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another pair
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Swtpm { dir, port, child };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn localca(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path("xdg/var/lib/swtpm-localca").join(name)).unwrap()
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.current_dir(self.dir.path())
            .env(
                "TPM2TOOLS_TCTI",
                format!("swtpm:host=127.0.0.1,port={}", self.port),
            )
            .env("TSS2_LOG", "all+none");
        c
    }

    /// Flush transient objects and sessions: swtpm has no resource manager.
    fn flush(&self) {
        for flag in ["-t", "-s"] {
            run(self.command("tpm2_flushcontext").arg(flag));
        }
    }

    /// Run a tpm2-tools command, then flush; `Err` carries stderr.
    fn tool(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let out = self.command(tool).args(args).output().unwrap();
        self.flush();
        if out.status.success() {
            Ok(out)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = Command::new("swtpm_ioctl")
            .args(["--tcp", &format!("127.0.0.1:{}", self.port + 1), "-s"])
            .output();
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The SPKI in a PEM file as a `PublicKey`.
fn pem_public_key(path: &Path) -> PublicKey {
    let der = pem::parse(std::fs::read(path).unwrap())
        .unwrap()
        .into_contents();
    let (_, spki) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            &der,
        )
        .unwrap();
    match spki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => PublicKey::Rsa {
            n: rsa.modulus.to_vec(),
            e: rsa.exponent.to_vec(),
        },
        x509_parser::public_key::PublicKey::EC(point) => {
            let point = point.data().to_vec();
            let curve = match point.len() {
                65 => Curve::P256,
                97 => Curve::P384,
                n => panic!("EC point of {n} bytes"),
            };
            PublicKey::Ec { curve, point }
        }
        other => panic!("{other:?}"),
    }
}

/// The value following `key:` (possibly on the next `value:` line) in tpm2_readpublic's YAML.
fn yaml_value(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix(&format!("{key}:")) {
            let rest = rest.trim();
            if !rest.is_empty() {
                return rest.to_owned();
            }
            let next = lines.next().unwrap().trim();
            return next.strip_prefix("value:").unwrap().trim().to_owned();
        }
    }
    panic!("{key} not in {yaml}");
}

fn end_to_end(ek_handle: &str, cert_index: &str) {
    let tpm = Swtpm::start();

    // 1. EK certificate from NV, chained to the swtpm local CA.
    let nv = tpm.tool("tpm2_nvread", &[cert_index]).unwrap().stdout;
    let ek_cert = parse_ek_certificate(&nv).unwrap();
    let mut store = TrustStore::empty();
    store
        .add_root_pem_or_der(&tpm.localca("swtpm-localca-rootca-cert.pem"))
        .unwrap();
    let presented = vec![tpm.localca("issuercert.pem")];
    let now = ek_cert.not_before + 60;
    let verified = verify_ek_chain(&ek_cert, &presented, &store, now).unwrap();
    assert_eq!(verified.chain.len(), 2);
    assert!(matches!(
        verify_ek_chain(&ek_cert, &presented, &TrustStore::empty(), now),
        Err(EkCertError::NoIssuerFound { .. })
    ));
    assert!(ek_cert.tpm_manufacturer.is_some());

    // 2. The certified key is the TPM's EK.
    let readpublic = tpm
        .tool(
            "tpm2_readpublic",
            &["-c", ek_handle, "-f", "pem", "-o", "ek.pem"],
        )
        .unwrap();
    let yaml = String::from_utf8_lossy(&readpublic.stdout).into_owned();
    let tpm_ek = pem_public_key(&tpm.path("ek.pem"));
    check_ek_public(&ek_cert, &tpm_ek).unwrap();
    let name_alg = HashAlg::from_name(&yaml_value(&yaml, "name-alg")).unwrap();
    let sym_key_bits: u16 = yaml_value(&yaml, "sym-keybits").parse().unwrap();
    let user_with_auth = yaml_value(&yaml, "attributes").contains("userwithauth");

    // 3. AK under the EK; credential for its name; TPM2_ActivateCredential.
    tpm.tool(
        "tpm2_createak",
        &[
            "-C", ek_handle, "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-n",
            "ak.name",
        ],
    )
    .unwrap();
    let ak_name = std::fs::read(tpm.path("ak.name")).unwrap();
    let ak_name_alg =
        HashAlg::from_tpm_alg_id(u16::from_be_bytes([ak_name[0], ak_name[1]])).unwrap();
    assert_eq!(ak_name.len(), 2 + ak_name_alg.output_len());

    let target = CredentialTarget {
        ek_key: ek_cert.public_key.clone(),
        name_alg,
        sym_key_bits,
    };
    let rng = SystemRandom::new();
    let activate = |name: &[u8], secret: &[u8]| -> Result<Vec<u8>, String> {
        let made = make_credential(&target, name, secret, &rng).unwrap();
        let mut file = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
        file.extend(made.id_object_tpm2b());
        file.extend(made.encrypted_secret_tpm2b());
        std::fs::write(tpm.path("cred.bin"), file).unwrap();
        let _ = std::fs::remove_file(tpm.path("out.bin"));
        let base = [
            "-c", "ak.ctx", "-C", ek_handle, "-i", "cred.bin", "-o", "out.bin",
        ];
        if user_with_auth {
            tpm.tool("tpm2_activatecredential", &base)?;
        } else {
            // The EK's policy is PolicySecret(TPM_RH_ENDORSEMENT).
            tpm.command("tpm2_startauthsession")
                .args(["--policy-session", "-S", "session.ctx"])
                .output()
                .unwrap();
            run(tpm
                .command("tpm2_policysecret")
                .args(["-S", "session.ctx", "-c", "e"]));
            let result = tpm
                .command("tpm2_activatecredential")
                .args(base)
                .args(["-P", "session:session.ctx"])
                .output()
                .unwrap();
            run(tpm.command("tpm2_flushcontext").arg("session.ctx"));
            tpm.flush();
            if !result.status.success() {
                return Err(String::from_utf8_lossy(&result.stderr).into_owned());
            }
        }
        Ok(std::fs::read(tpm.path("out.bin")).unwrap())
    };

    let mut secret = vec![0u8; name_alg.output_len()];
    rng.fill(&mut secret).unwrap();
    assert_eq!(activate(&ak_name, &secret).unwrap(), secret);
    assert_eq!(activate(&ak_name, b"short").unwrap(), b"short");

    let mut other_name = ak_name.clone();
    *other_name.last_mut().unwrap() ^= 1;
    assert!(activate(&other_name, &secret).is_err());
}

#[test]
fn rsa_2048_ek_cert_chain_and_activate_credential() {
    end_to_end("0x81010001", "0x01c00002");
}

#[test]
fn ecc_p384_ek_cert_chain_and_activate_credential() {
    end_to_end("0x81010016", "0x01c00016");
}
