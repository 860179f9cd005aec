//! `make_credential` against tpm2-tools' `tpm2_makecredential -T none`, with a
//! software TPM2_ActivateCredential as the oracle.
//!
//! The oracle below is written independently of the library (RustCrypto
//! hmac/sha2/aes/cfb-mode for KDFa, KDFe, HMAC and AES-CFB; aws-lc-rs only
//! for the private-key operations). It must open tpm2_makecredential's output
//! and `make_credential`'s output to the same secret, and it must refuse both
//! when the AK name is wrong or one byte is flipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use verifier_lib::credential::{
    make_credential, CredentialError, CredentialTarget, MadeCredential,
};
use verifier_lib::crypto::{Curve, HashAlg, PublicKey};

// ---------------------------------------------------------------- oracle

/// The EK private key the software TPM holds.
enum EkPrivate {
    Rsa(PrivateDecryptingKey),
    Ec(agreement::PrivateKey, Curve),
}

fn hmac_parts(alg: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    macro_rules! run {
        ($h:ty) => {{
            let mut m = <Hmac<$h> as Mac>::new_from_slice(key).unwrap();
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        HashAlg::Sha1 => run!(sha1::Sha1),
        HashAlg::Sha256 => run!(sha2::Sha256),
        HashAlg::Sha384 => run!(sha2::Sha384),
        HashAlg::Sha512 => run!(sha2::Sha512),
        other => panic!("{other:?}"),
    }
}

fn hash_parts(alg: HashAlg, parts: &[&[u8]]) -> Vec<u8> {
    use sha2::Digest;
    macro_rules! run {
        ($h:ty) => {{
            let mut d = <$h>::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }};
    }
    match alg {
        HashAlg::Sha1 => run!(sha1::Sha1),
        HashAlg::Sha256 => run!(sha2::Sha256),
        HashAlg::Sha384 => run!(sha2::Sha384),
        HashAlg::Sha512 => run!(sha2::Sha512),
        other => panic!("{other:?}"),
    }
}

/// TPM 2.0 Part 1 11.4.10.2 KDFa, label with its terminating NUL.
fn oracle_kdfa(alg: HashAlg, key: &[u8], label: &str, u: &[u8], v: &[u8], bits: u32) -> Vec<u8> {
    let label = [label.as_bytes(), &[0]].concat();
    let mut out = Vec::new();
    let mut i = 1u32;
    while out.len() * 8 < bits as usize {
        out.extend(hmac_parts(
            alg,
            key,
            &[&i.to_be_bytes(), &label, u, v, &bits.to_be_bytes()],
        ));
        i += 1;
    }
    out.truncate(bits as usize / 8);
    out
}

/// TPM 2.0 Part 1 11.4.10.3 KDFe.
fn oracle_kdfe(alg: HashAlg, z: &[u8], label: &str, u: &[u8], v: &[u8], bits: u32) -> Vec<u8> {
    let label = [label.as_bytes(), &[0]].concat();
    let mut out = Vec::new();
    let mut i = 1u32;
    while out.len() * 8 < bits as usize {
        out.extend(hash_parts(alg, &[&i.to_be_bytes(), z, &label, u, v]));
        i += 1;
    }
    out.truncate(bits as usize / 8);
    out
}

fn aes_cfb_decrypt(key: &[u8], data: &mut [u8]) {
    use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
    let iv = [0u8; 16];
    match key.len() {
        16 => cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .unwrap()
            .decrypt(data),
        24 => cfb_mode::Decryptor::<aes::Aes192>::new_from_slices(key, &iv)
            .unwrap()
            .decrypt(data),
        32 => cfb_mode::Decryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .unwrap()
            .decrypt(data),
        n => panic!("AES key of {n} bytes"),
    }
}

/// Software TPM2_ActivateCredential. `Err` names the check that failed.
fn activate(
    ek: &EkPrivate,
    name_alg: HashAlg,
    sym_bits: u32,
    ak_name: &[u8],
    made: &MadeCredential,
) -> Result<Vec<u8>, &'static str> {
    let digest_len = name_alg.output_len();
    let seed = match ek {
        EkPrivate::Rsa(key) => {
            let key = OaepPrivateDecryptingKey::new(key.clone()).unwrap();
            let alg = match name_alg {
                HashAlg::Sha256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                HashAlg::Sha384 => &aws_lc_rs::rsa::OAEP_SHA384_MGF1SHA384,
                other => panic!("{other:?}"),
            };
            let mut out = vec![0u8; key.min_output_size()];
            let seed = key
                .decrypt(alg, &made.encrypted_secret, &mut out, Some(b"IDENTITY\0"))
                .map_err(|_| "OAEP")?;
            seed.to_vec()
        }
        EkPrivate::Ec(key, curve) => {
            let s = &made.encrypted_secret;
            let x_len = u16::from_be_bytes([s[0], s[1]]) as usize;
            let x = s.get(2..2 + x_len).ok_or("point")?;
            let rest = &s[2 + x_len..];
            let y_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let y = rest.get(2..2 + y_len).ok_or("point")?;
            let n = curve.field_len();
            if rest.len() != 2 + y_len || x_len > n || y_len > n {
                return Err("point");
            }
            // tpm2-tools writes coordinates without their leading zero bytes
            // (1 in 256 points): the TPM reads them as numbers, so pad them
            // for the SEC1 point; KDFe takes x as sent.
            let pad = |c: &[u8]| [vec![0u8; n - c.len()], c.to_vec()].concat();
            let point = [&[4u8][..], &pad(x), &pad(y)].concat();
            let alg = match curve {
                Curve::P256 => &agreement::ECDH_P256,
                Curve::P384 => &agreement::ECDH_P384,
                other => panic!("{other:?}"),
            };
            let z = agreement::agree(
                key,
                agreement::UnparsedPublicKey::new(alg, &point),
                "ECDH",
                |z| Ok(z.to_vec()),
            )?;
            let own = key.compute_public_key().unwrap();
            let own_x = &own.as_ref()[1..1 + curve.field_len()];
            oracle_kdfe(name_alg, &z, "IDENTITY", x, own_x, digest_len as u32 * 8)
        }
    };
    if seed.len() != digest_len {
        return Err("seed size");
    }
    let id = &made.id_object;
    let hmac_len = u16::from_be_bytes([id[0], id[1]]) as usize;
    let integrity = id.get(2..2 + hmac_len).ok_or("id object")?;
    let enc = &id[2 + hmac_len..];
    let hmac_key = oracle_kdfa(
        name_alg,
        &seed,
        "INTEGRITY",
        &[],
        &[],
        digest_len as u32 * 8,
    );
    if hmac_parts(name_alg, &hmac_key, &[enc, ak_name]) != integrity {
        return Err("integrity");
    }
    let sym_key = oracle_kdfa(name_alg, &seed, "STORAGE", ak_name, &[], sym_bits);
    let mut plain = enc.to_vec();
    aes_cfb_decrypt(&sym_key, &mut plain);
    let len = u16::from_be_bytes([plain[0], plain[1]]) as usize;
    if plain.len() != 2 + len {
        return Err("credential size");
    }
    Ok(plain[2..].to_vec())
}

// ---------------------------------------------------------------- fixtures

struct Ek {
    private: EkPrivate,
    public: PublicKey,
    spki_der: Vec<u8>,
}

fn rsa_ek() -> Ek {
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki_der = private.public_key().as_der().unwrap().as_ref().to_vec();
    let (_, spki) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            &spki_der,
        )
        .unwrap();
    let public = match spki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => PublicKey::Rsa {
            n: rsa.modulus.to_vec(),
            e: rsa.exponent.to_vec(),
        },
        other => panic!("{other:?}"),
    };
    Ek {
        private: EkPrivate::Rsa(private),
        public,
        spki_der,
    }
}

fn ec_ek(curve: Curve) -> Ek {
    let alg = match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
        other => panic!("{other:?}"),
    };
    let private = agreement::PrivateKey::generate(alg).unwrap();
    let public_key = private.compute_public_key().unwrap();
    let spki_der = public_key.as_der().unwrap().as_ref().to_vec();
    Ek {
        public: PublicKey::Ec {
            curve,
            point: public_key.as_ref().to_vec(),
        },
        private: EkPrivate::Ec(private, curve),
        spki_der,
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).unwrap();
    b
}

fn sha256_name() -> Vec<u8> {
    [&[0x00, 0x0b][..], &random(32)].concat()
}

fn write_pem(path: &Path, der: &[u8]) {
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der.to_vec()));
    std::fs::write(path, pem).unwrap();
}

/// Run `tpm2_makecredential -T none` and split its output file:
/// magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
fn tpm2_tools_makecredential(ek: &Ek, key_alg: &str, name: &[u8], secret: &[u8]) -> MadeCredential {
    let dir = tempfile::tempdir().unwrap();
    let pub_path = dir.path().join("ek.pem");
    let secret_path = dir.path().join("secret");
    let out_path = dir.path().join("cred.out");
    write_pem(&pub_path, &ek.spki_der);
    std::fs::write(&secret_path, secret).unwrap();
    let output = Command::new("tpm2_makecredential")
        .args(["-T", "none", "-G", key_alg, "-u"])
        .arg(&pub_path)
        .arg("-s")
        .arg(&secret_path)
        .arg("-n")
        .arg(hex::encode(name))
        .arg("-o")
        .arg(&out_path)
        .output()
        .expect("tpm2_makecredential (tpm2-tools) must be installed");
    assert!(
        output.status.success(),
        "tpm2_makecredential failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = std::fs::read(&out_path).unwrap();
    assert_eq!(&out[0..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    let id_len = u16::from_be_bytes([out[8], out[9]]) as usize;
    let id_object = out[10..10 + id_len].to_vec();
    let rest = &out[10 + id_len..];
    let sec_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    assert_eq!(rest.len(), 2 + sec_len);
    MadeCredential {
        id_object,
        encrypted_secret: rest[2..].to_vec(),
    }
}

/// Every single-byte flip of either blob, and a wrong AK name, must fail.
fn assert_tamper_fails(
    ek: &Ek,
    name_alg: HashAlg,
    sym_bits: u32,
    name: &[u8],
    made: &MadeCredential,
) {
    let mut wrong_name = name.to_vec();
    *wrong_name.last_mut().unwrap() ^= 1;
    assert_eq!(
        activate(&ek.private, name_alg, sym_bits, &wrong_name, made),
        Err("integrity")
    );
    for i in 0..made.id_object.len() {
        let mut m = made.clone();
        m.id_object[i] ^= 0x01;
        assert!(
            activate(&ek.private, name_alg, sym_bits, name, &m).is_err(),
            "id_object[{i}]"
        );
    }
    for i in (0..made.encrypted_secret.len()).step_by(5) {
        let mut m = made.clone();
        m.encrypted_secret[i] ^= 0x01;
        assert!(
            activate(&ek.private, name_alg, sym_bits, name, &m).is_err(),
            "encrypted_secret[{i}]"
        );
    }
}

fn interop(ek: Ek, key_alg: &str) {
    let rng = SystemRandom::new();
    let target = CredentialTarget {
        ek_key: ek.public.clone(),
        name_alg: HashAlg::Sha256,
        sym_key_bits: 128,
    };
    for secret_len in [1usize, 16, 32] {
        let name = sha256_name();
        let secret = random(secret_len);

        let theirs = tpm2_tools_makecredential(&ek, key_alg, &name, &secret);
        assert_eq!(
            activate(&ek.private, HashAlg::Sha256, 128, &name, &theirs).unwrap(),
            secret
        );

        let ours = make_credential(&target, &name, &secret, &rng).unwrap();
        assert_eq!(ours.id_object.len(), theirs.id_object.len());
        // ECC: tpm2-tools drops leading zero bytes of the ephemeral point's
        // coordinates (see `activate`), so theirs may be a few bytes shorter.
        let (o, t) = (ours.encrypted_secret.len(), theirs.encrypted_secret.len());
        if key_alg.starts_with("rsa") {
            assert_eq!(o, t);
        } else {
            assert!(t <= o && o - t <= 4, "ours {o} bytes, theirs {t}");
        }
        assert_eq!(
            activate(&ek.private, HashAlg::Sha256, 128, &name, &ours).unwrap(),
            secret
        );

        assert_tamper_fails(&ek, HashAlg::Sha256, 128, &name, &theirs);
        assert_tamper_fails(&ek, HashAlg::Sha256, 128, &name, &ours);
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn rsa_2048_matches_tpm2_makecredential() {
    interop(rsa_ek(), "rsa");
}

#[test]
fn ecc_p256_matches_tpm2_makecredential() {
    interop(ec_ek(Curve::P256), "ecc");
}

/// tpm2_makecredential -G ecc only knows the P-256 EK template; the P-384
/// high-range EK (SHA-384 nameAlg, AES-256) is checked against the oracle here
/// and against a real (software) TPM in credential_swtpm.rs.
#[test]
fn ecc_p384_and_rsa_sha384_aes256_open_with_the_oracle() {
    let rng = SystemRandom::new();
    for (ek, name_alg) in [
        (ec_ek(Curve::P384), HashAlg::Sha384),
        (ec_ek(Curve::P256), HashAlg::Sha384),
        (rsa_ek(), HashAlg::Sha384),
    ] {
        for sym_bits in [128u16, 256] {
            let target = CredentialTarget {
                ek_key: ek.public.clone(),
                name_alg,
                sym_key_bits: sym_bits,
            };
            let name = [&[0x00, 0x0c][..], &random(48)].concat();
            let secret = random(48);
            let made = make_credential(&target, &name, &secret, &rng).unwrap();
            let opened = activate(&ek.private, name_alg, u32::from(sym_bits), &name, &made);
            assert_eq!(opened.unwrap(), secret);
            assert_tamper_fails(&ek, name_alg, u32::from(sym_bits), &name, &made);
        }
    }
}

#[test]
fn input_checks() {
    let rng = SystemRandom::new();
    let ek = ec_ek(Curve::P256);
    let target = CredentialTarget {
        ek_key: ek.public.clone(),
        name_alg: HashAlg::Sha256,
        sym_key_bits: 128,
    };
    let name = sha256_name();
    assert_eq!(
        make_credential(&target, &name, &[7u8; 33], &rng),
        Err(CredentialError::CredentialTooLong {
            max: 32,
            actual: 33
        })
    );
    assert_eq!(
        make_credential(&target, &name, &[], &rng),
        Err(CredentialError::CredentialEmpty)
    );
    for bad_name in [
        &name[..33],
        &[0x00, 0x0b][..],
        &[][..],
        &[0x00, 0x99, 1, 2][..],
    ] {
        assert!(matches!(
            make_credential(&target, bad_name, b"x", &rng),
            Err(CredentialError::AkName { .. })
        ));
    }
    let bad_bits = CredentialTarget {
        sym_key_bits: 100,
        ..target.clone()
    };
    assert_eq!(
        make_credential(&bad_bits, &name, b"x", &rng),
        Err(CredentialError::UnsupportedSymKeyBits { bits: 100 })
    );
    let not_on_curve = CredentialTarget {
        ek_key: PublicKey::Ec {
            curve: Curve::P256,
            point: [&[4u8][..], &[1u8; 64]].concat(),
        },
        ..target.clone()
    };
    assert!(matches!(
        make_credential(&not_on_curve, &name, b"x", &rng),
        Err(CredentialError::UnsupportedKey { .. })
    ));
    let short_point = CredentialTarget {
        ek_key: PublicKey::Ec {
            curve: Curve::P384,
            point: vec![4u8; 65],
        },
        ..target.clone()
    };
    assert!(matches!(
        make_credential(&short_point, &name, b"x", &rng),
        Err(CredentialError::UnsupportedKey { .. })
    ));
    let tiny_rsa = CredentialTarget {
        ek_key: PublicKey::Rsa {
            n: vec![0xc5; 64],
            e: vec![1, 0, 1],
        },
        ..target
    };
    assert!(matches!(
        make_credential(&tiny_rsa, &name, b"x", &rng),
        Err(CredentialError::UnsupportedKey { .. })
    ));
}

#[test]
fn outputs_are_fresh_and_tpm2b_wrappers_add_the_size() {
    let rng = SystemRandom::new();
    let ek = rsa_ek();
    let target = CredentialTarget {
        ek_key: ek.public,
        name_alg: HashAlg::Sha256,
        sym_key_bits: 128,
    };
    let name = sha256_name();
    let a = make_credential(&target, &name, b"same secret", &rng).unwrap();
    let b = make_credential(&target, &name, b"same secret", &rng).unwrap();
    assert_ne!(a.encrypted_secret, b.encrypted_secret);
    assert_ne!(a.id_object, b.id_object);
    // u16 32 ‖ HMAC-SHA256 ‖ (u16 len ‖ 11-byte secret)
    assert_eq!(a.id_object.len(), 2 + 32 + 2 + 11);
    assert_eq!(&a.id_object[..2], &[0, 32]);
    let wrapped = a.id_object_tpm2b();
    assert_eq!(&wrapped[..2], &(a.id_object.len() as u16).to_be_bytes());
    assert_eq!(&wrapped[2..], &a.id_object[..]);
    assert_eq!(&a.encrypted_secret_tpm2b()[..2], &[1, 0]);
}
