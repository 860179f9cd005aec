//! SEV-SNP chain, CRL and report-binding tests on a test-generated
//! AMD-shaped PKI (RSA-PSS SHA-384 ARK/ASK, P-384 VCEK/VLEK with AMD's
//! extensions) for every product. The test ARK is passed explicitly as a
//! dangerous extra root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod snp_support;

use snp_support::*;
use verifier_lib::snp::{
    expected_report_data, verify_chain, verify_report, AttestationReport, CertRole, Crl, CrlInput,
    Product, SignerKind, SnpError, SnpTrustAnchors, TcbComponent,
};

const PRODUCTS: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

fn trust(product: Product) -> SnpTrustAnchors {
    SnpTrustAnchors::amd_pinned()
        .unwrap()
        .with_dangerous_extra_root(product, &test_ark(product))
        .unwrap()
}

fn verify(
    c: &TestChain,
    report: &[u8],
    crl: CrlInput<'_>,
) -> Result<verifier_lib::snp::VerifiedReport, SnpError> {
    verify_report(
        report,
        &c.leaf,
        Some(&c.ask),
        &trust(c.product),
        crl,
        None,
        NOW,
    )
}

fn good_crl(product: Product) -> Crl {
    Crl::parse(&crl(
        product,
        &[&[0x77, 0x01]],
        NOW - 3600,
        NOW + 86_400,
        rsa_key(0),
    ))
    .unwrap()
}

#[test]
fn test_chain_verifies_for_every_product_and_signer() {
    for product in PRODUCTS {
        for vlek in [false, true] {
            let c = build_chain(product, vlek, default_spl(product), (NOT_BEFORE, NOT_AFTER));
            let report = signed_report(&report_spec(&c));
            let crl = good_crl(product);
            let v = verify(&c, &report, CrlInput::Fresh(&crl)).unwrap();
            assert_eq!(v.product, product);
            assert_eq!(
                v.signer,
                if vlek {
                    SignerKind::Vlek
                } else {
                    SignerKind::Vcek
                }
            );
            assert!(v.revocation_checked && v.dangerous_root);
            assert_eq!(v.reported_tcb.snp, c.spl.snp);
            assert_eq!(v.reported_tcb.fmc, c.spl.fmc);
            assert_eq!(v.csp_id.is_some(), vlek);
            assert_eq!(v.chip_id.is_some(), !vlek);
            // Without the extra root the same chain is untrusted.
            let pinned = SnpTrustAnchors::amd_pinned().unwrap();
            let err = verify_report(
                &report,
                &c.leaf,
                Some(&c.ask),
                &pinned,
                CrlInput::DangerousSkip,
                None,
                NOW,
            )
            .unwrap_err();
            assert_eq!(
                err,
                SnpError::UntrustedRoot {
                    role: CertRole::Intermediate
                }
            );
        }
    }
}

#[test]
fn crl_listing_the_vcek_or_ask_denies() {
    for product in PRODUCTS {
        let c = chain(product);
        let report = signed_report(&report_spec(&c));
        for (serial, role) in [
            (&c.leaf_serial, CertRole::Leaf),
            (&c.ask_serial, CertRole::Intermediate),
        ] {
            let der = crl(product, &[&[0x01], serial], NOW - 60, NOW + 60, rsa_key(0));
            let list = Crl::parse(&der).unwrap();
            assert_eq!(list.revoked_serials().len(), 2);
            let err = verify(&c, &report, CrlInput::Fresh(&list)).unwrap_err();
            assert_eq!(
                err,
                SnpError::Revoked {
                    role,
                    serial: hex::encode(serial)
                }
            );
        }
    }
}

#[test]
fn bad_or_stale_crls_deny() {
    let product = Product::Genoa;
    let c = chain(product);
    let report = signed_report(&report_spec(&c));
    // Signed by the ASK key instead of the ARK.
    let forged = Crl::parse(&crl(product, &[], NOW - 60, NOW + 60, rsa_key(1))).unwrap();
    assert_eq!(
        verify(&c, &report, CrlInput::Fresh(&forged)).unwrap_err(),
        SnpError::CrlSignatureInvalid
    );
    // A corrupted signature byte.
    let mut der = crl(product, &[], NOW - 60, NOW + 60, rsa_key(0));
    let last = der.len() - 1;
    der[last] ^= 1;
    let corrupted = Crl::parse(&der).unwrap();
    assert_eq!(
        verify(&c, &report, CrlInput::Fresh(&corrupted)).unwrap_err(),
        SnpError::CrlSignatureInvalid
    );
    // Expired nextUpdate and a future thisUpdate.
    for (this, next) in [(NOW - 7200, NOW - 1), (NOW + 10, NOW + 7200)] {
        let stale = Crl::parse(&crl(product, &[], this, next, rsa_key(0))).unwrap();
        assert!(matches!(
            verify(&c, &report, CrlInput::Fresh(&stale)).unwrap_err(),
            SnpError::CrlNotCurrent { .. }
        ));
    }
    // Issued under another product's ARK name.
    let other = Crl::parse(&crl(Product::Milan, &[], NOW - 60, NOW + 60, rsa_key(0))).unwrap();
    assert_eq!(
        verify(&c, &report, CrlInput::Fresh(&other)).unwrap_err(),
        SnpError::CrlIssuerMismatch
    );
    // Unavailable denies; DangerousSkip passes but says so.
    assert_eq!(
        verify(&c, &report, CrlInput::Unavailable).unwrap_err(),
        SnpError::CrlUnavailable
    );
    assert!(
        !verify(&c, &report, CrlInput::DangerousSkip)
            .unwrap()
            .revocation_checked
    );
    // Garbage and trailing bytes do not parse.
    assert_eq!(Crl::parse(b"not a crl").unwrap_err(), SnpError::CrlParse);
    let mut trailing = crl(product, &[], NOW - 60, NOW + 60, rsa_key(0));
    trailing.push(0);
    assert_eq!(Crl::parse(&trailing).unwrap_err(), SnpError::CrlParse);
}

#[test]
fn cached_chain_respects_crl_window() {
    let c = chain(Product::Milan);
    let report = signed_report(&report_spec(&c));
    let list = good_crl(Product::Milan);
    let chain = verify_chain(
        &c.leaf,
        Some(&c.ask),
        &trust(c.product),
        CrlInput::Fresh(&list),
        NOW,
    )
    .unwrap();
    verifier_lib::snp::verify_report_with_chain(&report, &chain, None, NOW + 3600).unwrap();
    let late = list.next_update().unwrap() + 1;
    assert!(matches!(
        verifier_lib::snp::verify_report_with_chain(&report, &chain, None, late),
        Err(SnpError::CrlNotCurrent { .. })
    ));
}

#[test]
fn report_cpuid_of_another_product_is_rejected() {
    for product in PRODUCTS {
        let c = chain(product);
        for other in PRODUCTS.into_iter().filter(|&p| p != product) {
            let mut spec = report_spec(&c);
            spec.cpuid = Some(cpuid_for(other));
            let err = verify(&c, &signed_report(&spec), CrlInput::DangerousSkip).unwrap_err();
            assert!(
                matches!(err, SnpError::ProductMismatch { expected, actual, .. } if expected == product && actual == other),
                "{err}"
            );
        }
        // An unknown CPUID is rejected too.
        let mut spec = report_spec(&c);
        spec.cpuid = Some([0x17, 0x31, 0]);
        assert!(matches!(
            verify(&c, &signed_report(&spec), CrlInput::DangerousSkip),
            Err(SnpError::UnknownCpuid { .. })
        ));
    }
}

#[test]
fn certificate_product_name_must_match_the_root() {
    // A Milan-named VCEK under a test root declared as Genoa.
    let c = chain(Product::Milan);
    let t = SnpTrustAnchors::amd_pinned()
        .unwrap()
        .with_dangerous_extra_root(Product::Genoa, &test_ark(Product::Milan))
        .unwrap();
    let err = verify_chain(&c.leaf, Some(&c.ask), &t, CrlInput::DangerousSkip, NOW).unwrap_err();
    assert!(matches!(
        err,
        SnpError::ProductMismatch {
            expected: Product::Genoa,
            actual: Product::Milan,
            ..
        }
    ));
}

#[test]
fn v2_report_uses_the_chain_product_and_masked_chip_id_parses_and_verifies() {
    for product in PRODUCTS {
        let c = chain(product);
        let mut spec = report_spec(&c);
        spec.version = 2;
        spec.cpuid = None;
        let v = verify(&c, &signed_report(&spec), CrlInput::DangerousSkip).unwrap();
        assert_eq!(v.product, product);
        assert!(v.report.cpuid.is_none());

        spec.chip_id = [0; 64];
        spec.key_info |= 2; // MASK_CHIP_KEY
        let masked = signed_report(&spec);
        let parsed = AttestationReport::parse(&masked).unwrap();
        assert!(parsed.chip_id_is_zero() && parsed.key_info.mask_chip_key);
        let v = verify(&c, &masked, CrlInput::DangerousSkip).unwrap();
        assert!(v.chip_id_masked);

        // Zero chip id without the mask flag does not match the hwID.
        spec.key_info &= !2;
        let err = verify(&c, &signed_report(&spec), CrlInput::DangerousSkip).unwrap_err();
        assert!(matches!(err, SnpError::ChipIdMismatch { .. }), "{err}");
        // The mask flag with a non-zero chip id is inconsistent.
        let mut spec = report_spec(&c);
        spec.key_info |= 2;
        assert_eq!(
            verify(&c, &signed_report(&spec), CrlInput::DangerousSkip).unwrap_err(),
            SnpError::MaskedChipIdNotZero
        );
    }
}

#[test]
fn tcb_extensions_must_match_reported_tcb() {
    for product in PRODUCTS {
        let c = chain(product);
        let mut components = vec![
            TcbComponent::Bootloader,
            TcbComponent::Tee,
            TcbComponent::Snp,
            TcbComponent::Microcode,
        ];
        if product == Product::Turin {
            components.push(TcbComponent::Fmc);
        }
        for component in components {
            let mut spl = c.spl;
            match component {
                TcbComponent::Fmc => spl.fmc = Some(spl.fmc.unwrap() + 1),
                TcbComponent::Bootloader => spl.bootloader += 1,
                TcbComponent::Tee => spl.tee += 1,
                TcbComponent::Snp => spl.snp += 1,
                _ => spl.microcode += 1,
            }
            let mut spec = report_spec(&c);
            spec.reported_tcb = spl.tcb(product);
            let err = verify(&c, &signed_report(&spec), CrlInput::DangerousSkip).unwrap_err();
            assert!(
                matches!(err, SnpError::TcbMismatch { component: got, .. } if got == component),
                "{product:?} {component:?}: {err}"
            );
        }
    }
}

#[test]
fn signer_kind_must_match_the_certificate() {
    let c = build_chain(
        Product::Milan,
        true,
        default_spl(Product::Milan),
        (NOT_BEFORE, NOT_AFTER),
    );
    let mut spec = report_spec(&c);
    spec.key_info = 0; // says VCEK, signed by the VLEK
    let err = verify(&c, &signed_report(&spec), CrlInput::DangerousSkip).unwrap_err();
    assert_eq!(
        err,
        SnpError::SignerMismatch {
            report: SignerKind::Vcek,
            certificate: SignerKind::Vlek
        }
    );
}

#[test]
fn expired_or_not_yet_valid_vcek_is_rejected() {
    let product = Product::Milan;
    for validity in [(NOT_BEFORE, NOW - 1), (NOW + 1, NOT_AFTER)] {
        let c = build_chain(product, false, default_spl(product), validity);
        let report = signed_report(&report_spec(&c));
        let err = verify(&c, &report, CrlInput::DangerousSkip).unwrap_err();
        assert!(
            matches!(
                err,
                SnpError::CertificateNotValid {
                    role: CertRole::Leaf,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn report_data_binding_is_sha512_of_nonce_and_key() {
    let c = chain(Product::Turin);
    let nonce = b"fresh nonce from the broker";
    let key = b"-----the bound public key-----";
    let want = expected_report_data(nonce, key);
    let mut joined = nonce.to_vec();
    joined.extend_from_slice(key);
    assert_eq!(
        want.to_vec(),
        verifier_lib::crypto::HashAlg::Sha512.digest(&joined)
    );
    let mut spec = report_spec(&c);
    spec.report_data = want;
    let report = signed_report(&spec);
    let t = trust(c.product);
    verify_report(
        &report,
        &c.leaf,
        Some(&c.ask),
        &t,
        CrlInput::DangerousSkip,
        Some(&want),
        NOW,
    )
    .unwrap();
    let other = expected_report_data(b"another nonce", key);
    let err = verify_report(
        &report,
        &c.leaf,
        Some(&c.ask),
        &t,
        CrlInput::DangerousSkip,
        Some(&other),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        SnpError::ReportDataMismatch {
            expected: hex::encode(other),
            actual: hex::encode(want)
        }
    );
}

#[test]
fn parser_rejects_bad_structure() {
    let c = chain(Product::Milan);
    let good = report_body(&report_spec(&c));
    assert!(AttestationReport::parse(&good).is_ok());
    assert_eq!(
        AttestationReport::parse(&good[..1183]).unwrap_err(),
        SnpError::InvalidLength {
            expected: 1184,
            actual: 1183
        }
    );
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        AttestationReport::parse(&long),
        Err(SnpError::InvalidLength { .. })
    ));
    for version in [0u32, 1, 4, 6, 0xffff_ffff] {
        let mut b = good.clone();
        b[..4].copy_from_slice(&version.to_le_bytes());
        assert_eq!(
            AttestationReport::parse(&b).unwrap_err(),
            SnpError::UnsupportedVersion { actual: version }
        );
    }
    let mut b = good.clone();
    b[0x34] = 2;
    assert_eq!(
        AttestationReport::parse(&b).unwrap_err(),
        SnpError::UnsupportedSignatureAlgorithm { actual: 2 }
    );
    let mut b = good.clone();
    b[0x48] = 2 << 2;
    assert_eq!(
        AttestationReport::parse(&b).unwrap_err(),
        SnpError::UnsupportedSigningKey { actual: 2 }
    );
    let mut b = good.clone();
    b[0x0a] = 0; // policy bit 17 cleared
    assert!(matches!(
        AttestationReport::parse(&b),
        Err(SnpError::PolicyReservedBitClear { .. })
    ));
    // Every reserved byte must be zero (v3 layout: 0x18b..0x1a0 reserved).
    let reserved: Vec<usize> = [
        0x4c..0x50,
        0x18b..0x1a0,
        0x1eb..0x1ec,
        0x1ef..0x1f0,
        0x1f8..0x2a0,
        0x330..0x4a0,
    ]
    .into_iter()
    .flatten()
    .collect();
    for off in reserved {
        let mut b = good.clone();
        b[off] = 1;
        assert_eq!(
            AttestationReport::parse(&b).unwrap_err(),
            SnpError::ReservedNonZero { offset: off }
        );
    }
    for (off, component) in [(0x2a0 + 48, "r"), (0x2e8 + 71, "s")] {
        let mut b = good.clone();
        b[off] = 1;
        assert_eq!(
            AttestationReport::parse(&b).unwrap_err(),
            SnpError::SignatureComponentTooLarge { component }
        );
    }
    let mut b = good.clone();
    b[0x0f] = 0x80; // policy bit 63
    assert_eq!(
        AttestationReport::parse(&b).unwrap_err(),
        SnpError::ReservedNonZero { offset: 0x08 }
    );
    // v5 carries mitigation vectors at 0x1f8..0x208; v3 must not.
    let mut b = good.clone();
    b[..4].copy_from_slice(&5u32.to_le_bytes());
    b[0x1f8] = 0x0b;
    b[0x200] = 0x0b;
    let v5 = AttestationReport::parse(&b).unwrap();
    assert_eq!(
        (v5.launch_mit_vector, v5.current_mit_vector),
        (Some(0x0b), Some(0x0b))
    );
}

#[test]
fn leaf_with_wrong_key_or_algorithm_is_rejected() {
    let c = chain(Product::Milan);
    // ASK used as a leaf: an RSA key where P-384 is required.
    let t = trust(Product::Milan);
    let err = verify_chain(&c.ask, Some(&c.ask), &t, CrlInput::DangerousSkip, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            SnpError::UnsupportedKey {
                role: CertRole::Leaf,
                ..
            }
        ),
        "{err}"
    );
    // Trailing bytes after a certificate.
    let mut leaf = c.leaf.clone();
    leaf.push(0);
    assert_eq!(
        verify_chain(&leaf, Some(&c.ask), &t, CrlInput::DangerousSkip, NOW).unwrap_err(),
        SnpError::CertificateParse {
            role: CertRole::Leaf
        }
    );
}

#[test]
fn every_single_byte_flip_is_rejected_for_every_product() {
    for product in PRODUCTS {
        let c = chain(product);
        let report = signed_report(&report_spec(&c));
        let cached = verify_chain(
            &c.leaf,
            Some(&c.ask),
            &trust(product),
            CrlInput::DangerousSkip,
            NOW,
        )
        .unwrap();
        verifier_lib::snp::verify_report_with_chain(&report, &cached, None, NOW).unwrap();
        for i in (0..0x2a0).chain(0x2a0..0x2a0 + 144) {
            let mut t = report.clone();
            t[i] ^= 0x01;
            assert!(
                verifier_lib::snp::verify_report_with_chain(&t, &cached, None, NOW).is_err(),
                "{product:?}: flip at {i:#x} accepted"
            );
        }
    }
}
