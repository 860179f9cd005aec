//! Latency of the attester's TPM operations on swtpm (debug build; the TPM
//! dominates). Prints medians; asserts every operation succeeded correctly.
//! A measurement, not a test: run it by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use swtpm_tests::Swtpm;
use verifier_lib::crypto::HashAlg;
use writ_attester::tpm::{AkAlg, EkAlg, Tpm};

const RUNS: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Software MakeCredential by tpm2-tools (not timed).
fn make_credential(
    dir: &std::path::Path,
    ek_public: &[u8],
    name: &[u8],
    secret: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    std::fs::write(dir.join("ek.pub"), ek_public).unwrap();
    std::fs::write(dir.join("secret"), secret).unwrap();
    let out = Command::new("tpm2_makecredential")
        .current_dir(dir)
        .args([
            "-T", "none", "-u", "ek.pub", "-s", "secret", "-o", "blob", "-n",
        ])
        .arg(hex::encode(name))
        .output()
        .unwrap();
    assert!(out.status.success());
    let blob = std::fs::read(dir.join("blob")).unwrap();
    let id_len = usize::from(u16::from_be_bytes([blob[8], blob[9]]));
    let rest = &blob[10 + id_len..];
    (blob[10..10 + id_len].to_vec(), rest[2..].to_vec())
}

/// `cargo run --release -p attester --example tpm_latency`
fn main() {
    let swtpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = Tpm::open(&swtpm.tcti()).unwrap();
    let selection = vec![(HashAlg::Sha256, vec![0, 1, 2, 3, 4, 5, 6, 7, 16])];
    for (ek_alg, ak_alg) in [
        (EkAlg::Rsa2048, AkAlg::EccP256),
        (EkAlg::Rsa2048, AkAlg::Rsa2048),
        (EkAlg::EccP384, AkAlg::EccP256),
    ] {
        let (mut enroll, mut eks, mut aks, mut activations) = (vec![], vec![], vec![], vec![]);
        for i in 0..RUNS {
            let secret = HashAlg::Sha256.digest(&[u8::try_from(i).unwrap()]);
            let start = Instant::now();
            let ek = tpm.create_ek(ek_alg).unwrap();
            let ek_done = start.elapsed();
            let ak = tpm.create_ak(&ek, ak_alg).unwrap();
            let ak_done = start.elapsed();
            let (id, enc) = make_credential(dir.path(), &ek.public_tpm2b, &ak.name, &secret);
            let start = Instant::now();
            let got = tpm.activate_credential(&ek, &ak, &id, &enc).unwrap();
            tpm.flush_ek(ek).unwrap();
            let activated = start.elapsed();
            assert_eq!(got, secret);
            eks.push(ek_done);
            aks.push(ak_done - ek_done);
            activations.push(activated);
            enroll.push(ak_done + activated);
        }
        let ek = tpm.create_ek(ek_alg).unwrap();
        let ak = tpm.create_ak(&ek, ak_alg).unwrap();
        let mut quotes = Vec::with_capacity(RUNS);
        for i in 0..RUNS {
            let nonce = HashAlg::Sha256.digest(&[u8::try_from(i).unwrap()]);
            let start = Instant::now();
            let ev = tpm.quote(&ek, &ak, &nonce, &selection).unwrap();
            quotes.push(start.elapsed());
            assert_eq!(ev.pcrs[&HashAlg::Sha256].len(), 9);
        }
        tpm.flush_ek(ek).unwrap();
        let ms = |v: Vec<Duration>| median(v).as_secs_f64() * 1e3;
        println!(
            "swtpm EK {ek_alg:?} / AK {ak_alg:?}: enroll median {:.1} ms (create EK {:.1}, create AK {:.1}, activate {:.1}); quote (load AK + PCR reads + quote) median {:.1} ms",
            ms(enroll),
            ms(eks),
            ms(aks),
            ms(activations),
            ms(quotes)
        );
    }
}
