//! The attester's TPM client against real swtpm instances (one per test),
//! with tpm2-tools as an independent peer for quotes and MakeCredential.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use swtpm_tests::Swtpm;
use tss_esapi::structures::Public;
use tss_esapi::traits::UnMarshall;
use verifier_lib::crypto::HashAlg;
use writ_attester::tpm::{AkAlg, AkBlob, EkAlg, QuoteEvidence, Tpm, TpmError};
use x509_parser::public_key::PublicKey;

const QUOTED_PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 16];

fn selection() -> Vec<(HashAlg, Vec<u8>)> {
    vec![(HashAlg::Sha256, QUOTED_PCRS.to_vec())]
}

fn open(swtpm: &Swtpm) -> Tpm {
    Tpm::open(&swtpm.tcti()).unwrap()
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn public(tpm2b: &[u8]) -> Public {
    let size = usize::from(u16::from_be_bytes([tpm2b[0], tpm2b[1]]));
    assert_eq!(size + 2, tpm2b.len(), "TPM2B_PUBLIC size prefix");
    Public::unmarshall(&tpm2b[2..]).unwrap()
}

/// tpm2-tools' "serialized" PCR file (what `tpm2_pcrread -F serialized`
/// writes: little-endian C structs): TPML_PCR_SELECTION (u32 count, 16 ×
/// {u16 hash, u8 sizeofSelect, u8[4] pcrSelect, pad}), then u32 count of
/// TPML_DIGEST, each {u32 count ≤ 8, 8 × {u16 size, u8[64]}}.
fn tpm2_tools_serialized_pcrs(ev: &QuoteEvidence) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(ev.pcrs.len()).unwrap().to_le_bytes());
    let mut digests = Vec::new();
    for slot in 0..16 {
        let mut entry = [0u8; 8];
        if let Some((alg, bank)) = ev.pcrs.iter().nth(slot) {
            entry[..2].copy_from_slice(&alg.tpm_alg_id().to_le_bytes());
            entry[2] = 3;
            for (&pcr, value) in bank {
                entry[3 + usize::from(pcr / 8)] |= 1 << (pcr % 8);
                digests.push(value.clone());
            }
        }
        out.extend_from_slice(&entry);
    }
    let chunks: Vec<&[Vec<u8>]> = digests.chunks(8).collect();
    out.extend_from_slice(&u32::try_from(chunks.len()).unwrap().to_le_bytes());
    for chunk in chunks {
        out.extend_from_slice(&u32::try_from(chunk.len()).unwrap().to_le_bytes());
        for i in 0..8 {
            let mut tpm2b = [0u8; 66];
            if let Some(d) = chunk.get(i) {
                tpm2b[..2].copy_from_slice(&u16::try_from(d.len()).unwrap().to_le_bytes());
                tpm2b[2..2 + d.len()].copy_from_slice(d);
            }
            out.extend_from_slice(&tpm2b);
        }
    }
    out
}

/// Check a quote with `tpm2_checkquote` (no TPM involved): the AK public as
/// a TPM2B_PUBLIC file, the attest, the TPMT_SIGNATURE, and our PCR values.
fn checkquote(dir: &Path, ak: &AkBlob, ev: &QuoteEvidence, nonce: &[u8]) -> bool {
    std::fs::write(dir.join("ak.pub"), &ak.public_tpm2b).unwrap();
    std::fs::write(dir.join("attest"), &ev.attest).unwrap();
    std::fs::write(dir.join("sig"), &ev.signature).unwrap();
    std::fs::write(dir.join("pcrs"), tpm2_tools_serialized_pcrs(ev)).unwrap();
    let out = run(Command::new("tpm2_checkquote")
        .current_dir(dir)
        .args(["-u", "ak.pub", "-m", "attest", "-s", "sig", "-f", "pcrs"])
        .args(["-g", "sha256", "-q"])
        .arg(hex::encode(nonce)));
    if !out.status.success() {
        eprintln!("tpm2_checkquote: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

/// resetCount from TPMS_ATTEST: magic, type, qualifiedSigner (TPM2B),
/// extraData (TPM2B), then clock (u64), resetCount (u32).
fn reset_count(attest: &[u8]) -> u32 {
    assert_eq!(
        &attest[..4],
        &[0xff, 0x54, 0x43, 0x47],
        "TPM_GENERATED magic"
    );
    assert_eq!(&attest[4..6], &[0x80, 0x18], "TPM_ST_ATTEST_QUOTE");
    let mut at = 6;
    for _ in 0..2 {
        let len = usize::from(u16::from_be_bytes([attest[at], attest[at + 1]]));
        at += 2 + len;
    }
    at += 8;
    u32::from_be_bytes(attest[at..at + 4].try_into().unwrap())
}

#[test]
fn identity_says_software() {
    let swtpm = Swtpm::start().unwrap();
    let id = open(&swtpm).identity().unwrap();
    assert!(id.software, "{id:?}");
    assert_eq!(id.manufacturer, "IBM");
    assert!(id.vendor.starts_with("SW"), "{id:?}");
    assert_ne!(id.firmware_version, 0);
}

#[test]
fn ek_certificates_certify_the_created_eks() {
    let swtpm = Swtpm::start().unwrap();
    let mut tpm = open(&swtpm);
    assert_eq!(tpm.detect_ek_alg().unwrap(), EkAlg::Rsa2048);
    assert_eq!(tpm.ek_certificate(EkAlg::EccP256).unwrap(), None);
    assert!(tpm.ek_chain_certificates().unwrap().is_empty());
    for alg in [EkAlg::Rsa2048, EkAlg::EccP384] {
        let der = tpm
            .ek_certificate(alg)
            .unwrap()
            .expect("swtpm provisions this EK cert");
        let (_padding, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ek = tpm.create_ek(alg).unwrap();
        match (
            cert.public_key().parsed().unwrap(),
            public(&ek.public_tpm2b),
        ) {
            (PublicKey::RSA(rsa), Public::Rsa { unique, .. }) => {
                assert_eq!(alg, EkAlg::Rsa2048);
                let modulus = rsa.modulus.iter().skip_while(|b| **b == 0).copied();
                assert_eq!(modulus.collect::<Vec<u8>>(), unique.value());
            }
            (PublicKey::EC(point), Public::Ecc { unique, .. }) => {
                assert_eq!(alg, EkAlg::EccP384);
                let mut sec1 = vec![0x04];
                sec1.extend_from_slice(unique.x().value());
                sec1.extend_from_slice(unique.y().value());
                assert_eq!(sec1.len(), 97);
                assert_eq!(point.data(), sec1.as_slice());
            }
            (k, p) => panic!("{alg:?}: certificate key {k:?} vs EK public {p:?}"),
        }
        tpm.flush_ek(ek).unwrap();
    }
}

#[test]
fn aks_of_both_algorithms_have_their_tpm_names() {
    let swtpm = Swtpm::start().unwrap();
    let mut tpm = open(&swtpm);
    let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
    for alg in [AkAlg::EccP256, AkAlg::Rsa2048] {
        let ak = tpm.create_ak(&ek, alg).unwrap();
        assert_eq!(ak.alg, alg);
        let tpmt = &ak.public_tpm2b[2..];
        let mut name = vec![0x00, 0x0b];
        name.extend_from_slice(&HashAlg::Sha256.digest(tpmt));
        assert_eq!(ak.name, name);
        let p = public(&ak.public_tpm2b);
        assert!(p.object_attributes().restricted() && p.object_attributes().sign_encrypt());
        assert!(!ak.private.is_empty());
    }
    tpm.flush_ek(ek).unwrap();
}

#[test]
fn quotes_verify_with_tpm2_checkquote_and_a_flipped_nonce_fails() {
    let swtpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = open(&swtpm);
    for (ek_alg, ak_alg) in [
        (EkAlg::Rsa2048, AkAlg::EccP256),
        (EkAlg::Rsa2048, AkAlg::Rsa2048),
        (EkAlg::EccP384, AkAlg::EccP256),
    ] {
        let ek = tpm.create_ek(ek_alg).unwrap();
        let ak = tpm.create_ak(&ek, ak_alg).unwrap();
        let nonce = HashAlg::Sha256.digest(format!("{ek_alg:?}{ak_alg:?}").as_bytes());
        let ev = tpm.quote(&ek, &ak, &nonce, &selection()).unwrap();
        assert_eq!(ev.pcrs.len(), 1);
        assert_eq!(
            ev.pcrs[&HashAlg::Sha256]
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            QUOTED_PCRS
        );
        assert!(ev.pcrs[&HashAlg::Sha256].values().all(|v| v.len() == 32));
        assert!(
            checkquote(dir.path(), &ak, &ev, &nonce),
            "{ek_alg:?}/{ak_alg:?}"
        );
        let mut flipped = nonce.clone();
        flipped[0] ^= 1;
        assert!(!checkquote(dir.path(), &ak, &ev, &flipped));
        tpm.flush_ek(ek).unwrap();
    }
}

#[test]
fn pcr_extend_changes_the_quoted_value() {
    let swtpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = open(&swtpm);
    let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
    let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
    let before = tpm.quote(&ek, &ak, b"before", &selection()).unwrap();
    let event = HashAlg::Sha256.digest(b"writ test event");
    tpm.pcr_extend(16, HashAlg::Sha256, &event).unwrap();
    let after = tpm.quote(&ek, &ak, b"after", &selection()).unwrap();
    let old = &before.pcrs[&HashAlg::Sha256][&16];
    assert_eq!(
        after.pcrs[&HashAlg::Sha256][&16],
        HashAlg::Sha256.extend(old, &event)
    );
    for pcr in [0, 1, 2, 3, 4, 5, 6, 7] {
        assert_eq!(
            before.pcrs[&HashAlg::Sha256][&pcr],
            after.pcrs[&HashAlg::Sha256][&pcr]
        );
    }
    assert!(checkquote(dir.path(), &ak, &after, b"after"));
    // The new values do not fit the old quote.
    let mut stale = before.clone();
    stale.pcrs = after.pcrs.clone();
    assert!(!checkquote(dir.path(), &ak, &stale, b"before"));
    assert!(matches!(
        tpm.pcr_extend(16, HashAlg::Sha256, &[0; 20]),
        Err(TpmError::InvalidInput { .. })
    ));
    tpm.flush_ek(ek).unwrap();
}

/// `tpm2_makecredential -T none` output: magic 0xBADCC0DE, version 1,
/// TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
fn make_credential(dir: &Path, ek_public: &[u8], name: &[u8], secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    std::fs::write(dir.join("ek.pub"), ek_public).unwrap();
    std::fs::write(dir.join("secret"), secret).unwrap();
    let out = run(Command::new("tpm2_makecredential")
        .current_dir(dir)
        .args([
            "-T", "none", "-u", "ek.pub", "-s", "secret", "-o", "blob", "-n",
        ])
        .arg(hex::encode(name)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = std::fs::read(dir.join("blob")).unwrap();
    assert_eq!(&blob[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    let id_len = usize::from(u16::from_be_bytes([blob[8], blob[9]]));
    let id_object = blob[10..10 + id_len].to_vec();
    let rest = &blob[10 + id_len..];
    let secret_len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    assert_eq!(rest.len(), 2 + secret_len);
    (id_object, rest[2..].to_vec())
}

#[test]
fn activate_credential_round_trips_and_rejects_a_wrong_ak_name() {
    let swtpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = open(&swtpm);
    for (ek_alg, ak_alg) in [
        (EkAlg::Rsa2048, AkAlg::EccP256),
        (EkAlg::Rsa2048, AkAlg::Rsa2048),
        (EkAlg::EccP384, AkAlg::EccP256),
    ] {
        let ek = tpm.create_ek(ek_alg).unwrap();
        let ak = tpm.create_ak(&ek, ak_alg).unwrap();
        let secret = HashAlg::Sha256.digest(format!("{ek_alg:?}/{ak_alg:?}").as_bytes());
        let (id, enc) = make_credential(dir.path(), &ek.public_tpm2b, &ak.name, &secret);
        let got = tpm.activate_credential(&ek, &ak, &id, &enc).unwrap();
        assert_eq!(got, secret, "{ek_alg:?}/{ak_alg:?}");

        let mut wrong_name = ak.name.clone();
        *wrong_name.last_mut().unwrap() ^= 1;
        let (id, enc) = make_credential(dir.path(), &ek.public_tpm2b, &wrong_name, &secret);
        let err = tpm.activate_credential(&ek, &ak, &id, &enc).unwrap_err();
        assert!(
            matches!(err, TpmError::ActivateCredential { .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        tpm.flush_ek(ek).unwrap();
    }
}

#[test]
fn reboot_increments_reset_count_and_the_stored_ak_still_loads() {
    let mut swtpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ak, first) = {
        let mut tpm = open(&swtpm);
        let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
        let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
        let ev = tpm.quote(&ek, &ak, b"boot 1", &selection()).unwrap();
        // Not flushed on purpose: dropping the Tpm flushes the EK.
        (ak, ev)
    };
    // Round trip through the persisted form.
    let ak: AkBlob = serde_json::from_str(&serde_json::to_string(&ak).unwrap()).unwrap();
    swtpm.restart().unwrap();
    let mut tpm = open(&swtpm);
    let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
    let second = tpm.quote(&ek, &ak, b"boot 2", &selection()).unwrap();
    assert_eq!(reset_count(&second.attest), reset_count(&first.attest) + 1);
    assert!(checkquote(dir.path(), &ak, &second, b"boot 2"));
}

#[test]
fn dropping_the_tpm_flushes_its_objects() {
    let swtpm = Swtpm::start().unwrap();
    // swtpm holds only a few transient objects: without flushing on drop
    // the later iterations would fail with TPM_RC_OBJECT_MEMORY (0x902).
    for _ in 0..6 {
        let mut tpm = open(&swtpm);
        let _ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
        let _ek2 = tpm.create_ek(EkAlg::EccP384).unwrap();
    }
    let mut tpm = open(&swtpm);
    let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
    let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
    tpm.quote(&ek, &ak, b"still works", &selection()).unwrap();
}

#[test]
fn invalid_inputs_are_rejected_before_the_tpm() {
    let swtpm = Swtpm::start().unwrap();
    let mut tpm = open(&swtpm);
    let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
    let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
    let err = tpm.quote(&ek, &ak, &[0; 65], &selection()).unwrap_err();
    assert!(
        matches!(err, TpmError::InvalidInput { field: "nonce", .. }),
        "{err:?}"
    );
    let err = tpm
        .quote(&ek, &ak, b"n", &[(HashAlg::Sha256, vec![24])])
        .unwrap_err();
    assert!(matches!(err, TpmError::InvalidInput { .. }), "{err:?}");
    let err = tpm
        .quote(&ek, &ak, b"n", &[(HashAlg::Sha1, vec![0])])
        .unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::InvalidInput {
                field: "PCR selection",
                ..
            }
        ),
        "swtpm allocates only the sha256 bank: {err:?}"
    );
    let mut broken = ak.clone();
    broken.public_tpm2b.pop();
    let err = tpm.quote(&ek, &broken, b"n", &selection()).unwrap_err();
    assert!(matches!(err, TpmError::Tpm2bLength { .. }), "{err:?}");
    assert!(matches!(
        Tpm::open("nonsense-tcti:x"),
        Err(TpmError::Tcti { .. } | TpmError::Open { .. })
    ));
}

#[test]
fn ten_tpms_in_parallel_each_enroll_and_quote() {
    let threads: Vec<_> = (0..10)
        .map(|i| {
            std::thread::spawn(move || {
                let swtpm = Swtpm::start().unwrap();
                let dir = tempfile::tempdir().unwrap();
                let mut tpm = open(&swtpm);
                let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
                let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
                let nonce = format!("thread {i}").into_bytes();
                let ev = tpm.quote(&ek, &ak, &nonce, &selection()).unwrap();
                assert!(checkquote(dir.path(), &ak, &ev, &nonce));
                ek.public_tpm2b
            })
        })
        .collect();
    let mut eks: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // All copies of one template share the endorsement seed, hence the EK.
    eks.dedup();
    assert_eq!(eks.len(), 1);
}

#[test]
fn exhausting_object_memory_is_a_retryable_error() {
    let swtpm = Swtpm::start().unwrap();
    let mut tpm = open(&swtpm);
    let mut held = Vec::new();
    let err = loop {
        match tpm.create_ek(EkAlg::EccP384) {
            Ok(ek) => held.push(ek),
            Err(e) => break e,
        }
        assert!(held.len() < 16, "swtpm should run out of transient slots");
    };
    assert!(matches!(err, TpmError::CreateEk { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    for ek in held {
        tpm.flush_ek(ek).unwrap();
    }
    let ek = tpm.create_ek(EkAlg::EccP384).unwrap();
    tpm.flush_ek(ek).unwrap();
}
