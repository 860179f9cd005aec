//! The bundled manufacturer CA store (ca/manufacturers/, see its PROVENANCE.md)
//! and the trust-store loaders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use verifier_lib::ekcert::{
    parse_ek_certificate, verify_ek_chain, EkCertError, TrustStore, BUNDLED_MANUFACTURER_CAS,
};

#[test]
fn bundle_list_matches_the_ca_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ca/manufacturers");
    let mut on_disk: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    on_disk.sort();
    let mut bundled: Vec<(String, Vec<u8>)> = BUNDLED_MANUFACTURER_CAS
        .iter()
        .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
        .collect();
    bundled.sort();
    assert_eq!(on_disk, bundled);
}

#[test]
fn every_bundled_certificate_parses_including_non_canonical_der() {
    let mut vendors_seen = std::collections::BTreeSet::new();
    for (name, pem) in BUNDLED_MANUFACTURER_CAS {
        let cert = parse_ek_certificate(pem).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!cert.subject.is_empty(), "{name}");
        assert!(cert.not_before < cert.not_after, "{name}");
        let mut single = TrustStore::empty();
        assert_eq!(single.add_root_pem_or_der(pem).unwrap(), 1, "{name}");
        // The DER form loads too.
        assert_eq!(single.add_root_pem_or_der(&cert.der).unwrap(), 1);
        assert_eq!(single.len(), 1, "{name}: duplicate not merged");
        vendors_seen.insert(
            name.split(['_', '.'])
                .next()
                .unwrap()
                .trim_end_matches(char::is_numeric),
        );
    }
    // Nuvoton (NUVO/NTC) roots use non-canonical DER (keylime#1775); they must be among them.
    for vendor in ["NUVO", "NTC", "IFX", "INF", "STM", "GS", "INTEL"] {
        assert!(
            vendors_seen.contains(vendor),
            "{vendor} missing: {vendors_seen:?}"
        );
    }
}

#[test]
fn manufacturers_store_classifies_and_chains_its_intermediates() {
    let store = TrustStore::manufacturers().unwrap();
    let mut distinct = Vec::new();
    for (_, pem) in BUNDLED_MANUFACTURER_CAS {
        let der = parse_ek_certificate(pem).unwrap().der;
        if !distinct.contains(&der) {
            distinct.push(der);
        }
    }
    assert_eq!(store.len(), distinct.len());
    assert!(!store.is_empty());
    assert!(store.roots_len() > 0 && store.roots_len() < store.len());

    // Every bundled certificate that is not a root chains to a root of the
    // bundle at a time inside its own validity.
    let mut chained = 0;
    for der in &distinct {
        let cert = parse_ek_certificate(der).unwrap();
        let is_root = store.root_subjects().any(|s| s == cert.subject)
            && verify_ek_chain(&cert, &[], &store, cert.not_before + 1).is_err();
        if is_root {
            continue;
        }
        // Some vendors issued intermediates before their root's notBefore
        // (e.g. IFX); move the time up to the latest notBefore of the chain.
        let mut now = cert.not_before + 1;
        let verified = loop {
            match verify_ek_chain(&cert, &[], &store, now) {
                Err(EkCertError::NotYetValid { not_before, .. }) if not_before >= now => {
                    now = not_before + 1;
                }
                other => break other.unwrap_or_else(|e| panic!("{}: {e}", cert.subject)),
            }
        };
        let root = &verified.chain.last().unwrap().subject;
        assert!(store.root_subjects().any(|s| s == root));
        chained += 1;
    }
    assert_eq!(chained, store.len() - store.roots_len());
}

#[test]
fn loaders_count_bundles_and_reject_non_certificates() {
    let bundle: Vec<u8> = BUNDLED_MANUFACTURER_CAS
        .iter()
        .take(5)
        .flat_map(|(_, pem)| pem.iter().copied())
        .collect();
    let mut store = TrustStore::empty();
    assert_eq!(store.add_intermediate_pem_or_der(&bundle).unwrap(), 5);
    assert_eq!(store.roots_len(), 0);
    assert!(store.len() <= 5 && !store.is_empty());

    let key_pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        store.add_root_pem_or_der(key_pem),
        Err(EkCertError::PemLabel { .. })
    ));
    assert!(matches!(
        store.add_root_pem_or_der(b"just some text"),
        Err(EkCertError::NoCertificate)
    ));
    assert!(store.add_root_pem_or_der(&[]).is_err());
    assert!(store
        .add_root_pem_or_der(&[0x30, 0x03, 0x02, 0x01, 0x00])
        .is_err());
    // An EK certificate is one certificate: a bundle is not accepted.
    assert!(matches!(
        parse_ek_certificate(&bundle),
        Err(EkCertError::MultipleCertificates { count: 5 })
    ));
}
