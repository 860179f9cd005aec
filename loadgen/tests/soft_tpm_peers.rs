//! The simulated TPM's evidence checked with someone else's tools, so no
//! encoder shared with the broker can hide a bug on both sides:
//! `tpm2_checkquote` accepts a sample of its quotes (and refuses one with a
//! flipped nonce), `tpm2_eventlog` parses its 100-event log and replays it
//! to the PCR values its quotes cover, `tpm2_makecredential` makes
//! credentials its software ActivateCredential opens, and `openssl verify`
//! chains its EK certificates to the test CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use writ_loadgen::fleet::{Fleet, LOG_EVENTS};
use writ_loadgen::soft_tpm::ek_cert::{pem, spki};
use writ_loadgen::soft_tpm::marshal::tpm2b_public;

const NOW: i64 = 1_800_000_000;

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?} (tpm2-tools/openssl installed?): {e}"))
}

/// tpm2-tools' "serialized" PCR file (`tpm2_pcrread -F serialized`, little-
/// endian C structs): TPML_PCR_SELECTION (u32 count, 16 × {u16 hash, u8
/// sizeofSelect, u8[4] pcrSelect, pad}), then u32 count of TPML_DIGEST,
/// each {u32 count ≤ 8, 8 × {u16 size, u8[64]}}. One SHA-256 bank, PCRs 0–7.
fn serialized_pcrs(values: &[[u8; 32]; 8]) -> Vec<u8> {
    let mut out = 1u32.to_le_bytes().to_vec();
    for slot in 0..16 {
        let mut entry = [0u8; 8];
        if slot == 0 {
            entry[..2].copy_from_slice(&0x000bu16.to_le_bytes());
            entry[2] = 3;
            entry[3] = 0xff;
        }
        out.extend_from_slice(&entry);
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    for v in values {
        let mut tpm2b = [0u8; 66];
        tpm2b[..2].copy_from_slice(&32u16.to_le_bytes());
        tpm2b[2..34].copy_from_slice(v);
        out.extend_from_slice(&tpm2b);
    }
    out
}

fn checkquote(dir: &Path, nonce: &[u8]) -> Output {
    run(Command::new("tpm2_checkquote")
        .current_dir(dir)
        .env("TSS2_LOG", "all+none")
        .args(["-u", "ak.pub", "-m", "attest", "-s", "sig", "-f", "pcrs"])
        .args(["-g", "sha256", "-q"])
        .arg(hex::encode(nonce)))
}

#[test]
fn tpm2_checkquote_accepts_the_quotes_and_refuses_a_flipped_nonce() {
    let state = tempfile::tempdir().unwrap();
    let fleet = Fleet::open(state.path(), 4, 1, NOW).unwrap();
    for host in &fleet.hosts {
        let dir = tempfile::tempdir().unwrap();
        let nonce: Vec<u8> = (0..32u8).map(|b| b ^ host.index as u8).collect();
        let quote = host.tpm.quote(&nonce, host.clock(), &fleet.log).unwrap();
        std::fs::write(dir.path().join("ak.pub"), tpm2b_public(&host.tpm.ak_public)).unwrap();
        std::fs::write(dir.path().join("attest"), &quote.attest).unwrap();
        std::fs::write(dir.path().join("sig"), &quote.signature).unwrap();
        std::fs::write(dir.path().join("pcrs"), serialized_pcrs(&fleet.log.pcrs)).unwrap();
        let ok = checkquote(dir.path(), &nonce);
        assert!(
            ok.status.success(),
            "host {}: tpm2_checkquote: {}",
            host.index,
            String::from_utf8_lossy(&ok.stderr)
        );
        let mut flipped = nonce.clone();
        flipped[0] ^= 1;
        assert!(!checkquote(dir.path(), &flipped).status.success());
    }
}

/// The `pcrs:` section of `tpm2_eventlog`'s YAML: `  N : 0x<hex>` lines
/// under `sha256:`.
fn replayed_sha256(yaml: &str) -> Vec<(usize, Vec<u8>)> {
    let Some(pcrs) = yaml.split("\npcrs:").nth(1) else {
        return Vec::new();
    };
    let Some(bank) = pcrs.split("sha256:").nth(1) else {
        return Vec::new();
    };
    bank.lines()
        .filter_map(|l| {
            let (index, value) = l.trim().split_once(':')?;
            let value = value.trim().strip_prefix("0x")?;
            Some((index.trim().parse().ok()?, hex::decode(value).ok()?))
        })
        .collect()
}

#[test]
fn tpm2_eventlog_parses_the_log_and_replays_the_quoted_pcrs() {
    let state = tempfile::tempdir().unwrap();
    let fleet = Fleet::open(state.path(), 1, 1, NOW).unwrap();
    let path = state.path().join("binary_bios_measurements");
    std::fs::write(&path, &fleet.log.bytes).unwrap();
    let out = run(Command::new("tpm2_eventlog").arg(&path));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tpm2_eventlog: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The header plus LOG_EVENTS events, numbered from 0.
    assert!(yaml.contains(&format!("EventNum: {LOG_EVENTS}")), "{yaml}");
    assert!(!yaml.contains(&format!("EventNum: {}", LOG_EVENTS + 1)));
    let replayed = replayed_sha256(&yaml);
    let expected: Vec<(usize, Vec<u8>)> = fleet
        .log
        .pcrs
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.to_vec()))
        .collect();
    assert_eq!(replayed, expected, "{yaml}");
}

#[test]
fn software_activate_credential_opens_tpm2_makecredential_credentials() {
    let state = tempfile::tempdir().unwrap();
    let fleet = Fleet::open(state.path(), 2, 1, NOW).unwrap();
    for host in &fleet.hosts {
        let dir = tempfile::tempdir().unwrap();
        let ek_pem = dir.path().join("ek.pem");
        std::fs::write(&ek_pem, pem("PUBLIC KEY", &spki(host.tpm.ek_point()))).unwrap();
        let secret = format!("secret of host {}", host.index).into_bytes();
        std::fs::write(dir.path().join("secret"), &secret).unwrap();
        let out = run(Command::new("tpm2_makecredential")
            .current_dir(dir.path())
            .args([
                "-T", "none", "-G", "ecc", "-u", "ek.pem", "-s", "secret", "-n",
            ])
            .arg(hex::encode(&host.tpm.ak_name))
            .args(["-o", "cred.out"]));
        assert!(
            out.status.success(),
            "tpm2_makecredential: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET
        let blob = std::fs::read(dir.path().join("cred.out")).unwrap();
        assert_eq!(&blob[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
        let id_len = usize::from(u16::from_be_bytes([blob[8], blob[9]]));
        let id_object = &blob[10..10 + id_len];
        let rest = &blob[10 + id_len..];
        let encrypted_secret = &rest[2..];
        let opened = host
            .tpm
            .activate_credential(id_object, encrypted_secret)
            .unwrap();
        assert_eq!(opened, secret);
        // Made for another AK: the integrity check refuses it.
        let other = &fleet.hosts[1 - host.index];
        assert!(other
            .tpm
            .activate_credential(id_object, encrypted_secret)
            .is_err());
    }
}

#[test]
fn openssl_chains_the_ek_certificates_to_the_test_ca() {
    let state = tempfile::tempdir().unwrap();
    let now = writ_loadgen::exchange::unix_now();
    let fleet = Fleet::open(state.path(), 2, 1, now).unwrap();
    for host in &fleet.hosts {
        let cert = fleet
            .ca
            .issue_ek_cert(&[1, host.index as u8], host.tpm.ek_point(), now)
            .unwrap();
        let path = state.path().join(format!("ek-{}.pem", host.index));
        std::fs::write(&path, pem("CERTIFICATE", &cert)).unwrap();
        let out = run(Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&fleet.ca_pem_path)
            .arg(&path));
        assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The certified key is the EK's.
        let text = run(Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(&path));
        assert_eq!(
            String::from_utf8_lossy(&text.stdout),
            pem("PUBLIC KEY", &spki(host.tpm.ek_point()))
        );
    }
}
