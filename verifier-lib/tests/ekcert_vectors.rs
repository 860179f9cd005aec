//! EK certificate parsing and chain verification over every vector directory
//! in tests/vectors/ekcert/ (see tests/vectors/PROVENANCE-ekcert.md).
//!
//! A vector directory holds one EK certificate (`ek.pem`/`ek.der`, and
//! possibly `ek_with_nv_padding.der`) plus the certificates of its chain.
//! Self-signed certificates of a directory are its roots, the others its
//! intermediates. Every check runs at a fixed time inside all validities.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use verifier_lib::crypto::{Curve, PublicKey};
use verifier_lib::ekcert::{
    check_ek_public, parse_ek_certificate, verify_ek_chain, EkCertError, EkCertificate, EkIdentity,
    TrustStore, BUNDLED_MANUFACTURER_CAS,
};
use verifier_lib::tpm::{check_ek_template, EkTemplateKey, Public, EK_TEMPLATES};

const EK_FILES: [&str; 3] = ["ek.der", "ek.pem", "ek_with_nv_padding.der"];

struct Vector {
    dir: PathBuf,
    /// (file name, raw bytes, parsed) of each EK file in the directory.
    eks: Vec<(String, Vec<u8>, EkCertificate)>,
    roots: Vec<(Vec<u8>, EkCertificate)>,
    intermediates: Vec<(Vec<u8>, EkCertificate)>,
}

impl Vector {
    /// A time inside the validity of every certificate of the directory.
    fn fixed_time(&self) -> i64 {
        let all = self
            .eks
            .iter()
            .map(|(_, _, c)| c)
            .chain(self.roots.iter().map(|(_, c)| c))
            .chain(self.intermediates.iter().map(|(_, c)| c));
        let t = all.clone().map(|c| c.not_before).max().unwrap() + 1;
        assert!(all.clone().all(|c| t <= c.not_after), "{:?}", self.dir);
        t
    }

    fn store(&self) -> TrustStore {
        let mut store = TrustStore::empty();
        for (bytes, _) in &self.roots {
            assert_eq!(store.add_root_pem_or_der(bytes).unwrap(), 1);
        }
        store
    }

    fn presented(&self) -> Vec<Vec<u8>> {
        self.intermediates.iter().map(|(b, _)| b.clone()).collect()
    }
}

fn vectors_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/ekcert")
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    if entries
        .iter()
        .any(|p| EK_FILES.iter().any(|f| p.ends_with(f)))
    {
        out.push(dir.to_path_buf());
    }
    for p in entries {
        if p.is_dir() {
            collect_dirs(&p, out);
        }
    }
}

fn load_vectors() -> Vec<Vector> {
    let mut dirs = Vec::new();
    collect_dirs(&vectors_root(), &mut dirs);
    assert!(!dirs.is_empty());
    dirs.into_iter()
        .map(|dir| {
            let mut v = Vector {
                dir: dir.clone(),
                eks: Vec::new(),
                roots: Vec::new(),
                intermediates: Vec::new(),
            };
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for path in files {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                let bytes = std::fs::read(&path).unwrap();
                let cert = parse_ek_certificate(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if EK_FILES.contains(&name.as_str()) {
                    v.eks.push((name, bytes, cert));
                } else if cert.subject == cert.issuer {
                    v.roots.push((bytes, cert));
                } else {
                    v.intermediates.push((bytes, cert));
                }
            }
            assert!(!v.roots.is_empty(), "{}: no root", dir.display());
            v
        })
        .collect()
}

#[test]
fn every_vector_chain_verifies() {
    let vectors = load_vectors();
    assert!(vectors.len() >= 4);
    for v in &vectors {
        let now = v.fixed_time();
        for (name, _, ek) in &v.eks {
            // Intermediates presented by the attester.
            let verified = verify_ek_chain(ek, &v.presented(), &v.store(), now)
                .unwrap_or_else(|e| panic!("{}/{name}: {e}", v.dir.display()));
            assert_eq!(verified.ek, *ek);
            assert_eq!(verified.chain.len(), v.intermediates.len() + 1);
            let root_subjects: Vec<_> = v.roots.iter().map(|(_, c)| &c.subject).collect();
            assert!(root_subjects.contains(&&verified.chain.last().unwrap().subject));
            assert_eq!(verified.chain.first().unwrap().subject, ek.issuer);

            // The same intermediates held in the store instead.
            let mut store = v.store();
            for (bytes, _) in &v.intermediates {
                store.add_intermediate_pem_or_der(bytes).unwrap();
            }
            let again = verify_ek_chain(ek, &[], &store, now).unwrap();
            assert_eq!(again.chain, verified.chain);
        }
    }
}

#[test]
fn tpm_identity_and_key_types() {
    for v in load_vectors() {
        for (name, _, ek) in &v.eks {
            // A certificate with a TPM SAN carries all three attributes.
            let present = [&ek.tpm_manufacturer, &ek.tpm_model, &ek.tpm_version]
                .iter()
                .filter(|a| a.is_some())
                .count();
            assert!(present == 0 || present == 3, "{}/{name}", v.dir.display());
            if let Some(m) = &ek.tpm_manufacturer {
                assert!(m.starts_with("id:"), "{m}");
            }
            match &ek.public_key {
                PublicKey::Rsa { n, .. } => assert_eq!(n.len(), 256),
                PublicKey::Ec { point, .. } => assert_eq!(point.first(), Some(&4)),
                other => panic!("unexpected key {other:?}"),
            }
        }
    }
}

#[test]
fn nv_padded_certificate_trims_to_the_plain_der() {
    let mut seen = 0;
    for v in load_vectors() {
        let Some((_, padded_bytes, padded)) =
            v.eks.iter().find(|(n, _, _)| n == "ek_with_nv_padding.der")
        else {
            continue;
        };
        let plain = std::fs::read(v.dir.join("ek.der")).unwrap();
        assert_eq!(padded.der, plain);
        assert_eq!(padded.trailing_padding, padded_bytes.len() - plain.len());
        assert!(padded.trailing_padding > 0);
        let unpadded = parse_ek_certificate(&plain).unwrap();
        assert_eq!(unpadded.trailing_padding, 0);
        assert_eq!(unpadded.public_key, padded.public_key);

        // Padding that is not 0x00/0xff is rejected, as is a truncated certificate.
        let mut junk = padded_bytes.clone();
        *junk.last_mut().unwrap() = 0x42;
        assert!(matches!(
            parse_ek_certificate(&junk),
            Err(EkCertError::TrailingData { .. })
        ));
        assert!(matches!(
            parse_ek_certificate(&plain[..plain.len() - 1]),
            Err(EkCertError::Der { .. })
        ));
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn chains_through_the_bundled_manufacturer_store_where_the_root_is_bundled() {
    let manufacturers = TrustStore::manufacturers().unwrap();
    let mut bundled_ders = Vec::new();
    for (_, pem) in BUNDLED_MANUFACTURER_CAS {
        bundled_ders.push(parse_ek_certificate(pem).unwrap().der);
    }
    let mut verified_via_bundle = 0;
    for v in load_vectors() {
        let now = v.fixed_time();
        let root_bundled = v.roots.iter().any(|(_, r)| bundled_ders.contains(&r.der));
        for (name, _, ek) in &v.eks {
            let result = verify_ek_chain(ek, &v.presented(), &manufacturers, now);
            if root_bundled {
                let chain = result.unwrap_or_else(|e| panic!("{}/{name}: {e}", v.dir.display()));
                let root = &chain.chain.last().unwrap().subject;
                assert!(manufacturers.root_subjects().any(|s| s == root));
                verified_via_bundle += 1;
            } else {
                assert!(
                    matches!(result, Err(EkCertError::NoIssuerFound { .. })),
                    "{}/{name}: {result:?}",
                    v.dir.display()
                );
            }
        }
    }
    assert!(verified_via_bundle >= 1);
}

#[test]
fn wrong_root_store_fails() {
    let vectors = load_vectors();
    for (i, v) in vectors.iter().enumerate() {
        // Roots of every other directory whose roots differ from this one's.
        let mut other = TrustStore::empty();
        for (j, w) in vectors.iter().enumerate() {
            if i == j {
                continue;
            }
            for (bytes, root) in &w.roots {
                if !v.roots.iter().any(|(_, r)| r.der == root.der) {
                    other.add_root_pem_or_der(bytes).unwrap();
                }
            }
        }
        for (name, _, ek) in &v.eks {
            let empty = verify_ek_chain(ek, &v.presented(), &TrustStore::empty(), v.fixed_time());
            assert!(matches!(empty, Err(EkCertError::NoIssuerFound { .. })));
            let wrong = verify_ek_chain(ek, &v.presented(), &other, v.fixed_time());
            assert!(
                wrong.is_err(),
                "{}/{name} verified against foreign roots",
                v.dir.display()
            );
        }
    }
}

#[test]
fn validity_is_checked_for_the_ek_and_every_issuer() {
    for v in load_vectors() {
        let store = v.store();
        for (_, _, ek) in &v.eks {
            let after = verify_ek_chain(ek, &v.presented(), &store, ek.not_after + 1);
            assert!(
                matches!(&after, Err(EkCertError::Expired { not_after, .. }) if *not_after == ek.not_after),
                "{after:?}"
            );
            let before = verify_ek_chain(ek, &v.presented(), &store, ek.not_before - 1);
            assert!(matches!(before, Err(EkCertError::NotYetValid { .. })));
            // Just before an issuer expires the EK may still be valid: then the
            // issuer is the one reported.
            for (_, issuer) in v.roots.iter().chain(&v.intermediates) {
                let t = issuer.not_after + 1;
                if t <= ek.not_after && t >= ek.not_before {
                    let r = verify_ek_chain(ek, &v.presented(), &store, t);
                    assert!(matches!(r, Err(EkCertError::Expired { .. })), "{r:?}");
                }
            }
        }
    }
}

#[test]
fn tampered_signature_byte_fails() {
    for v in load_vectors() {
        for (name, bytes, ek) in &v.eks {
            if name == "ek.pem" {
                continue; // the DER forms cover the same certificate
            }
            let mut der = ek.der.clone();
            let last = der.len() - 1;
            der[last] ^= 0x01;
            let mut tampered_bytes = der.clone();
            tampered_bytes.extend_from_slice(&bytes[ek.der.len()..]);
            let tampered = parse_ek_certificate(&tampered_bytes).unwrap();
            let r = verify_ek_chain(&tampered, &v.presented(), &v.store(), v.fixed_time());
            assert!(
                matches!(r, Err(EkCertError::SignatureInvalid { .. })),
                "{}/{name}: {r:?}",
                v.dir.display()
            );
        }
    }
}

/// Offset where the TBSCertificate ends (the signature algorithm and value follow).
fn tbs_end(der: &[u8]) -> usize {
    fn header(b: &[u8], at: usize) -> (usize, usize) {
        let first = b[at + 1];
        if first < 0x80 {
            (2, first as usize)
        } else {
            let n = (first & 0x7f) as usize;
            let len = b[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |a, &x| (a << 8) | x as usize);
            (2 + n, len)
        }
    }
    let (outer_hdr, _) = header(der, 0);
    let (tbs_hdr, tbs_len) = header(der, outer_hdr);
    outer_hdr + tbs_hdr + tbs_len
}

#[test]
fn byte_flip_sweep_never_verifies() {
    for v in load_vectors() {
        let store = v.store();
        let presented = v.presented();
        let now = v.fixed_time();
        for (name, _, ek) in &v.eks {
            if name != "ek.der" && name != "ek.pem" {
                continue;
            }
            let end = tbs_end(&ek.der);
            // Every byte of the signature algorithm and value, plus a sample of the TBS.
            let offsets = (end..ek.der.len()).chain((0..end).step_by(13));
            for offset in offsets {
                for mask in [0x01u8, 0x80] {
                    let mut der = ek.der.clone();
                    der[offset] ^= mask;
                    let Ok(cert) = parse_ek_certificate(&der) else {
                        continue;
                    };
                    let r = verify_ek_chain(&cert, &presented, &store, now);
                    assert!(
                        r.is_err(),
                        "{}/{name}: flip at {offset} mask {mask:#x} verified",
                        v.dir.display()
                    );
                }
            }
        }
    }
}

#[test]
fn ek_public_binding() {
    let vectors = load_vectors();
    let keys: Vec<PublicKey> = vectors
        .iter()
        .map(|v| v.eks[0].2.public_key.clone())
        .collect();
    for v in &vectors {
        for (_, _, ek) in &v.eks {
            check_ek_public(ek, &ek.public_key).unwrap();
            for k in keys.iter().filter(|k| **k != ek.public_key) {
                let e = check_ek_public(ek, k).unwrap_err();
                match e {
                    EkCertError::EkPublicMismatch { expected, actual } => {
                        assert_ne!(expected, actual);
                    }
                    other => panic!("{other:?}"),
                }
            }
            // A leading zero on the modulus is the same key.
            if let PublicKey::Rsa { n, e } = &ek.public_key {
                let mut padded = vec![0u8];
                padded.extend_from_slice(n);
                check_ek_public(
                    ek,
                    &PublicKey::Rsa {
                        n: padded,
                        e: e.clone(),
                    },
                )
                .unwrap();
                let mut flipped = n.clone();
                flipped[10] ^= 1;
                assert!(check_ek_public(
                    ek,
                    &PublicKey::Rsa {
                        n: flipped,
                        e: e.clone()
                    }
                )
                .is_err());
            }
        }
    }
}

#[test]
fn presented_chain_with_padding_and_pem() {
    for v in load_vectors() {
        // Presented intermediates may come from NV with 0xff padding, or as PEM.
        let padded: Vec<Vec<u8>> = v
            .intermediates
            .iter()
            .map(|(_, c)| {
                let mut d = c.der.clone();
                d.extend_from_slice(&[0xff; 37]);
                d
            })
            .collect();
        for (_, _, ek) in &v.eks {
            verify_ek_chain(ek, &padded, &v.store(), v.fixed_time()).unwrap();
        }
        // Unrelated, self-signed and duplicate presented certificates do not disturb the search.
        let mut noisy = v.presented();
        noisy.extend(v.roots.iter().map(|(b, _)| b.clone()));
        noisy.extend(v.presented());
        for (_, pem) in BUNDLED_MANUFACTURER_CAS.iter().take(10) {
            noisy.push(pem.to_vec());
        }
        for (_, _, ek) in &v.eks {
            verify_ek_chain(ek, &noisy, &v.store(), v.fixed_time()).unwrap();
        }
    }
}

#[test]
fn serializes_for_the_broker() {
    let v = &load_vectors()[0];
    let (_, _, ek) = &v.eks[0];
    let verified = verify_ek_chain(ek, &v.presented(), &v.store(), v.fixed_time()).unwrap();
    let json = serde_json::to_value(&verified).unwrap();
    assert_eq!(json["ek"]["serial_hex"], ek.serial_hex);
    assert_eq!(
        json["chain"].as_array().unwrap().len(),
        verified.chain.len()
    );
}

#[cfg(feature = "fuzzing")]
#[test]
fn fuzz_entry_point_survives_truncations_and_flips() {
    for v in load_vectors() {
        for (_, bytes, _) in &v.eks {
            for len in 0..bytes.len() {
                verifier_lib::fuzzing::ek_cert(&bytes[..len]);
            }
            for offset in (0..bytes.len()).step_by(7) {
                let mut b = bytes.clone();
                b[offset] ^= 0xff;
                verifier_lib::fuzzing::ek_cert(&b);
            }
        }
    }
}

/// The `TPMT_PUBLIC` a TPM makes for `key` from the default EK template of
/// its type, as TPM2_ReadPublic returns it; `None` without a template.
fn default_template_public(key: &PublicKey) -> Option<Vec<u8>> {
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|&&x| x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    let wanted = match key {
        PublicKey::Rsa { n, .. } => EkTemplateKey::Rsa {
            bits: strip(n).len() * 8,
        },
        PublicKey::Ec { curve, .. } => EkTemplateKey::Ecc { curve: *curve },
        _ => return None,
    };
    let t = EK_TEMPLATES.iter().find(|t| t.key == wanted)?;
    let mut b = Vec::new();
    let object_type: u16 = if matches!(key, PublicKey::Rsa { .. }) {
        0x0001
    } else {
        0x0023
    };
    b.extend_from_slice(&object_type.to_be_bytes());
    b.extend_from_slice(&t.name_alg.tpm_alg_id().to_be_bytes());
    b.extend_from_slice(&t.object_attributes.to_be_bytes());
    b.extend_from_slice(&u16::try_from(t.auth_policy.len()).unwrap().to_be_bytes());
    b.extend_from_slice(t.auth_policy);
    b.extend_from_slice(&[0x00, 0x06]);
    b.extend_from_slice(&t.aes_key_bits.to_be_bytes());
    b.extend_from_slice(&[0x00, 0x43, 0x00, 0x10]); // CFB, scheme null
    match key {
        PublicKey::Rsa { n, .. } => {
            let n = strip(n);
            b.extend_from_slice(&u16::try_from(n.len() * 8).unwrap().to_be_bytes());
            b.extend_from_slice(&0u32.to_be_bytes()); // exponent 0 = 65537
            b.extend_from_slice(&u16::try_from(n.len()).unwrap().to_be_bytes());
            b.extend_from_slice(&n);
        }
        PublicKey::Ec { curve, point } => {
            let id: u16 = match curve {
                Curve::P256 => 3,
                Curve::P384 => 4,
                Curve::P521 => 5,
                _ => return None,
            };
            let len = curve.field_len();
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&[0x00, 0x10]); // kdf null
            for coordinate in [&point[1..=len], &point[len + 1..]] {
                b.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
                b.extend_from_slice(coordinate);
            }
        }
        _ => return None,
    }
    Some(b)
}

/// Finding 1: the real EK certificates' keys, as a TPM presents them from
/// the default template, pass the template check, and the identity of the
/// EK public area is the identity of the certificate's key.
#[test]
fn finding1_vector_keys_pass_the_template_and_identity_checks() {
    let mut checked = 0;
    for v in load_vectors() {
        for (name, _, ek) in &v.eks {
            let of_cert = EkIdentity::of_key(&ek.public_key);
            let certified = EkIdentity::of_certified_key(&ek.public_key, ek).unwrap();
            assert_eq!(certified.key_digest, of_cert.key_digest);
            assert!(certified.certificate_digest.is_some());
            let Some(tpmt) = default_template_public(&ek.public_key) else {
                continue;
            };
            let public = Public::parse(&tpmt).unwrap();
            check_ek_template(&public)
                .unwrap_or_else(|e| panic!("{}/{name}: {e}", v.dir.display()));
            let presented = EkIdentity::of_certified_key(&public.key, ek).unwrap();
            assert_eq!(presented, certified, "{}/{name}", v.dir.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no vector carries a key of a default template");
}
