//! SEV-SNP policy appraisal: one test per knob on verified test reports,
//! plus TOML round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod snp_support;

use snp_support::*;
use verifier_lib::policy::{Policy, PolicyError};
use verifier_lib::snp::{
    appraise, verify_report, CrlInput, Product, SnpPolicy, SnpPolicyError, SnpRule,
    SnpTrustAnchors, TcbComponent, TcbMinimum, VerifiedReport,
};

fn verified_with(
    product: Product,
    vlek: bool,
    edit: impl FnOnce(&mut ReportSpec),
) -> VerifiedReport {
    let c = build_chain(product, vlek, default_spl(product), (NOT_BEFORE, NOT_AFTER));
    let mut spec = report_spec(&c);
    edit(&mut spec);
    let trust = SnpTrustAnchors::amd_pinned()
        .unwrap()
        .with_dangerous_extra_root(product, &test_ark(product))
        .unwrap();
    let crl_der = crl(product, &[], NOW - 60, NOW + 60, rsa_key(0));
    let list = verifier_lib::snp::Crl::parse(&crl_der).unwrap();
    verify_report(
        &signed_report(&spec),
        &c.leaf,
        Some(&c.ask),
        &trust,
        CrlInput::Fresh(&list),
        None,
        NOW,
    )
    .unwrap()
}

fn verified(edit: impl FnOnce(&mut ReportSpec)) -> VerifiedReport {
    verified_with(Product::Milan, false, edit)
}

/// A policy every default test report satisfies.
fn passing() -> SnpPolicy {
    SnpPolicy {
        allowed_measurements: vec![[0xab; 48]],
        allowed_host_data: vec![[0; 32]],
        dangerous_allow_extra_root: true,
        ..SnpPolicy::default()
    }
}

fn rules(v: &VerifiedReport, p: &SnpPolicy) -> Vec<SnpRule> {
    appraise(v, p).into_iter().map(|x| x.rule).collect()
}

#[test]
fn baseline_passes_and_defaults_are_strict() {
    let v = verified(|_| {});
    assert!(appraise(&v, &passing()).is_empty());
    // Default: no measurement and no HOST_DATA allowed, extra root not allowed.
    assert_eq!(
        rules(&v, &SnpPolicy::default()),
        vec![
            SnpRule::Measurement,
            SnpRule::HostData,
            SnpRule::TrustedRoot
        ]
    );
    let any = SnpPolicy {
        dangerous_any_measurement: true,
        ..passing()
    };
    assert!(appraise(&verified(|s| s.measurement = [1; 48]), &any).is_empty());
}

#[test]
fn every_failing_rule_is_reported() {
    let v = verified(|s| {
        s.measurement = [1; 48];
        s.guest_svn = 1;
        s.vmpl = 2;
        s.policy |= 1 << 19;
    });
    let p = SnpPolicy {
        min_guest_svn: Some(3),
        max_vmpl: 0,
        ..passing()
    };
    let got = appraise(&v, &p);
    let got_rules: Vec<_> = got.iter().map(|x| x.rule).collect();
    assert_eq!(
        got_rules,
        vec![
            SnpRule::Measurement,
            SnpRule::GuestSvn,
            SnpRule::Debug,
            SnpRule::Vmpl
        ]
    );
    assert_eq!(got[1].expected, ">= 3");
    assert_eq!(got[1].actual, "1");
    let json = serde_json::to_value(&got).unwrap();
    assert_eq!(json[0]["rule"], "measurement");
}

#[test]
fn allow_lists() {
    let v = verified(|s| {
        s.host_data = [2; 32];
        s.id_key_digest = [3; 48];
        s.author_key_digest = [4; 48];
        s.family_id = [5; 16];
        s.image_id = [6; 16];
    });
    let ok = SnpPolicy {
        allowed_host_data: vec![[9; 32], [2; 32]],
        allowed_id_key_digests: vec![[3; 48]],
        allowed_author_key_digests: vec![[4; 48]],
        family_id: Some([5; 16]),
        image_id: Some([6; 16]),
        ..passing()
    };
    assert!(appraise(&v, &ok).is_empty());
    let bad = SnpPolicy {
        allowed_host_data: vec![[9; 32]],
        allowed_id_key_digests: vec![[9; 48]],
        allowed_author_key_digests: vec![[9; 48]],
        family_id: Some([9; 16]),
        image_id: Some([9; 16]),
        ..passing()
    };
    assert_eq!(
        rules(&v, &bad),
        vec![
            SnpRule::HostData,
            SnpRule::IdKeyDigest,
            SnpRule::AuthorKeyDigest,
            SnpRule::FamilyId,
            SnpRule::ImageId
        ]
    );
}

#[test]
fn tcb_minimums_per_component() {
    let v = verified(|s| {
        let mut spl = default_spl(Product::Milan);
        spl.snp = 20;
        s.committed_tcb = spl.tcb(Product::Milan);
        s.launch_tcb = spl.tcb(Product::Milan);
    });
    let spl = default_spl(Product::Milan);
    let at = TcbMinimum {
        bootloader: Some(spl.bootloader),
        tee: Some(spl.tee),
        snp: Some(spl.snp),
        microcode: Some(spl.microcode),
        fmc: None,
    };
    let p = SnpPolicy {
        min_reported_tcb: at,
        min_current_tcb: at,
        min_committed_tcb: TcbMinimum {
            snp: Some(20),
            ..TcbMinimum::default()
        },
        min_launch_tcb: TcbMinimum {
            snp: Some(21),
            ..TcbMinimum::default()
        },
        ..passing()
    };
    assert_eq!(
        rules(&v, &p),
        vec![SnpRule::MinLaunchTcb(TcbComponent::Snp)]
    );
    let above = SnpPolicy {
        min_reported_tcb: TcbMinimum {
            microcode: Some(spl.microcode + 1),
            bootloader: Some(spl.bootloader + 1),
            ..at
        },
        ..passing()
    };
    assert_eq!(
        rules(&v, &above),
        vec![
            SnpRule::MinReportedTcb(TcbComponent::Bootloader),
            SnpRule::MinReportedTcb(TcbComponent::Microcode)
        ]
    );
    // FMC exists only on Turin.
    let fmc = SnpPolicy {
        min_reported_tcb: TcbMinimum {
            fmc: Some(1),
            ..TcbMinimum::default()
        },
        ..passing()
    };
    assert_eq!(
        rules(&v, &fmc),
        vec![SnpRule::MinReportedTcb(TcbComponent::Fmc)]
    );
    let turin = verified_with(Product::Turin, false, |_| {});
    assert!(appraise(&turin, &fmc).is_empty());
}

#[test]
fn firmware_version_and_build() {
    let v = verified(|s| {
        s.current_version = [9, 55, 1];
        s.committed_version = [4, 52, 1];
    });
    let p = SnpPolicy {
        min_firmware_version: Some(verifier_lib::snp::MinFirmwareVersion {
            major: 1,
            minor: 53,
        }),
        min_build: Some(5),
        ..passing()
    };
    assert_eq!(
        rules(&v, &p),
        vec![SnpRule::CommittedFirmwareVersion, SnpRule::CommittedBuild]
    );
}

#[test]
fn debug_migration_smt_socket() {
    let v = verified(|s| {
        s.policy |= (1 << 19) | (1 << 18);
        s.report_id_ma = [7; 32];
        s.platform_info = 1;
    });
    let strict = SnpPolicy {
        require_smt_disabled: true,
        require_single_socket: true,
        ..passing()
    };
    assert_eq!(
        rules(&v, &strict),
        vec![
            SnpRule::Debug,
            SnpRule::MigrationAgent,
            SnpRule::ReportIdMa,
            SnpRule::SmtDisabled,
            SnpRule::SingleSocket
        ]
    );
    let lax = SnpPolicy {
        require_no_debug: false,
        allow_migration_agent: true,
        ..passing()
    };
    assert!(appraise(&v, &lax).is_empty());
    let clean = verified(|s| {
        s.policy |= 1 << 20;
        s.platform_info = 0;
        s.report_id_ma = [0; 32];
    });
    assert!(appraise(&clean, &strict).is_empty());
}

/// Issue #12 finding 7: with `max_vmpl` unset only VMPL 0 passes.
#[test]
fn finding7_default_max_vmpl_refuses_vmpl_1() {
    assert_eq!(SnpPolicy::default().max_vmpl, 0);
    let from_toml: SnpPolicy = toml::from_str("dangerous_any_measurement = true").unwrap();
    assert_eq!(from_toml.max_vmpl, 0);
    let vmpl1 = verified(|s| s.vmpl = 1);
    assert_eq!(rules(&vmpl1, &passing()), vec![SnpRule::Vmpl]);
    assert!(rules(&verified(|s| s.vmpl = 0), &passing()).is_empty());
}

#[test]
fn vmpl_product_signer_masking() {
    let v = verified(|s| s.vmpl = 1);
    assert_eq!(
        rules(
            &v,
            &SnpPolicy {
                max_vmpl: 0,
                ..passing()
            }
        ),
        vec![SnpRule::Vmpl]
    );
    assert!(appraise(
        &v,
        &SnpPolicy {
            max_vmpl: 1,
            ..passing()
        }
    )
    .is_empty());
    let products = SnpPolicy {
        allowed_products: vec![Product::Genoa, Product::Turin],
        max_vmpl: 1,
        ..passing()
    };
    assert_eq!(rules(&v, &products), vec![SnpRule::Product]);
    let vlek = verified_with(Product::Genoa, true, |_| {});
    assert_eq!(
        rules(
            &vlek,
            &SnpPolicy {
                require_vcek: true,
                ..passing()
            }
        ),
        vec![SnpRule::Signer]
    );
    let masked = verified(|s| {
        s.chip_id = [0; 64];
        s.key_info |= 2;
    });
    assert_eq!(rules(&masked, &passing()), vec![SnpRule::MaskedChipId]);
    assert!(appraise(
        &masked,
        &SnpPolicy {
            allow_masked_chip_id: true,
            ..passing()
        }
    )
    .is_empty());
}

#[test]
fn id_block_and_author_key() {
    let p = SnpPolicy {
        require_id_block: true,
        require_author_key: true,
        ..passing()
    };
    let none = verified(|_| {});
    assert_eq!(rules(&none, &p), vec![SnpRule::IdBlock, SnpRule::AuthorKey]);
    let both = verified(|s| {
        s.id_key_digest = [1; 48];
        s.author_key_digest = [2; 48];
        s.key_info |= 1;
    });
    assert!(appraise(&both, &p).is_empty());
}

#[test]
fn unchecked_revocation_is_a_violation_unless_dangerously_allowed() {
    let c = chain(Product::Milan);
    let trust = SnpTrustAnchors::amd_pinned()
        .unwrap()
        .with_dangerous_extra_root(Product::Milan, &test_ark(Product::Milan))
        .unwrap();
    let v = verify_report(
        &signed_report(&report_spec(&c)),
        &c.leaf,
        Some(&c.ask),
        &trust,
        CrlInput::DangerousSkip,
        None,
        NOW,
    )
    .unwrap();
    assert_eq!(rules(&v, &passing()), vec![SnpRule::Revocation]);
    assert!(appraise(
        &v,
        &SnpPolicy {
            dangerous_allow_unchecked_revocation: true,
            ..passing()
        }
    )
    .is_empty());
}

#[test]
fn policy_toml_round_trip_with_hex() {
    let text = r#"
        allowed_measurements = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
        family_id = "05050505050505050505050505050505"
        min_guest_svn = 2
        max_vmpl = 0
        allowed_products = ["Milan", "Genoa"]
        [min_reported_tcb]
        snp = 8
        microcode = 115
    "#;
    let p: SnpPolicy = toml::from_str(text).unwrap();
    assert_eq!(p.allowed_measurements, vec![[0xab; 48]]);
    assert_eq!(p.family_id, Some([5; 16]));
    assert!(p.require_no_debug, "require_no_debug defaults to true");
    assert_eq!(p.min_reported_tcb.snp, Some(8));
    let back: SnpPolicy = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    assert!(toml::from_str::<SnpPolicy>("allowed_measurements = [\"abcd\"]").is_err());
    assert!(toml::from_str::<SnpPolicy>("unknown_knob = true").is_err());
}

#[test]
fn finding1_empty_allowed_host_data_accepts_nothing() {
    let v = verified(|s| s.host_data = [7; 32]);
    let empty = SnpPolicy {
        allowed_host_data: Vec::new(),
        ..passing()
    };
    assert_eq!(rules(&v, &empty), vec![SnpRule::HostData]);
    assert_eq!(
        empty.check_host_data_rule(),
        Err(SnpPolicyError::HostDataUnrestricted)
    );
    let any = SnpPolicy {
        allowed_host_data: Vec::new(),
        dangerous_any_host_data: true,
        ..passing()
    };
    assert!(appraise(&v, &any).is_empty());
    assert_eq!(any.check_host_data_rule(), Ok(()));
    let both = SnpPolicy {
        dangerous_any_host_data: true,
        ..passing()
    };
    assert_eq!(
        both.check_host_data_rule(),
        Err(SnpPolicyError::HostDataContradictory { count: 1 })
    );
    assert_eq!(passing().check_host_data_rule(), Ok(()));
}

#[test]
fn finding1_policy_without_host_data_rule_is_refused_at_load() {
    let doc = |snp: &str| {
        format!(
            "id = \"p\"\n[[groups]]\nname = \"guests\"\nhosts = [\"*\"]\n[groups.snp]\n\
             allowed_measurements = [\"{}\"]\n{snp}\
             [groups.snp.min_reported_tcb]\nsnp = 8\n",
            hex::encode([0xab; 48])
        )
    };
    match Policy::parse_toml(&doc("")) {
        Err(PolicyError::Snp { group, reason }) => {
            assert_eq!(group, "guests");
            assert_eq!(reason, SnpPolicyError::HostDataUnrestricted);
        }
        other => panic!("expected an SNP policy error, got {other:?}"),
    }
    Policy::parse_toml(&doc("dangerous_any_host_data = true\n")).unwrap();
    Policy::parse_toml(&doc(&format!(
        "allowed_host_data = [\"{}\"]\n",
        hex::encode([1; 32])
    )))
    .unwrap();
}
