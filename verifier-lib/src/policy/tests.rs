//! Tests of policy parsing, validation and PCR appraisal.

use super::*;

fn z(n: u8) -> String {
    hex::encode([n; 32])
}

fn doc() -> String {
    format!(
        r#"
id = "t1"
[[groups]]
name = "g"
hosts = ["*"]
[groups.pcrs]
0 = ["{a}"]
7 = ["{a}", "{b}"]

[[workloads]]
name = "hello"
digests = ["{c}"]
"#,
        a = z(1),
        b = z(2),
        c = z(3)
    )
}

#[test]
fn parses_and_appraises_every_failure() {
    let p = Policy::parse_toml(&doc()).unwrap();
    assert_eq!(p.id, "t1");
    assert_eq!(p.hash, HashAlg::Sha256.digest(doc().as_bytes()));
    let g = p.group_for("any-host").unwrap();
    assert_eq!(g.pcr_selection(), vec![(HashAlg::Sha256, vec![0, 7])]);

    let mut quoted = PcrMap::new();
    quoted
        .entry(HashAlg::Sha256)
        .or_default()
        .insert(0, vec![1; 32]);
    quoted
        .entry(HashAlg::Sha256)
        .or_default()
        .insert(7, vec![2; 32]);
    assert!(g.appraise_pcrs(&quoted).is_empty());

    quoted
        .entry(HashAlg::Sha256)
        .or_default()
        .insert(0, vec![9; 32]);
    quoted.entry(HashAlg::Sha256).or_default().remove(&7);
    let f = g.appraise_pcrs(&quoted);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(matches!(f[0], Failure::PcrNotAllowed { pcr: 0, .. }));
    assert_eq!(
        f[1],
        Failure::PcrMissing {
            bank: HashAlg::Sha256,
            pcr: 7
        }
    );
}

#[test]
fn workload_rules() {
    let p = Policy::parse_toml(&doc()).unwrap();
    let g = p.group_for("h").unwrap();
    assert_eq!(
        p.check_workload(g, "hello", &[3; 32])
            .unwrap()
            .lifetime_secs,
        300
    );
    assert!(matches!(
        p.check_workload(g, "hello", &[4; 32]),
        Err(Failure::WorkloadDigestNotAllowed { .. })
    ));
    assert!(matches!(
        p.check_workload(g, "other", &[3; 32]),
        Err(Failure::WorkloadUnknown { .. })
    ));
}

#[test]
fn rejects_bad_documents() {
    let bad_len = doc().replace(&z(1), "abcd");
    assert!(matches!(
        Policy::parse_toml(&bad_len),
        Err(PolicyError::BadPcrValue { pcr: 0, .. })
    ));
    let bad_idx = doc().replace("7 = [", "24 = [");
    assert!(matches!(
        Policy::parse_toml(&bad_idx),
        Err(PolicyError::BadPcrIndex { .. })
    ));
    let long = format!("{}\n[tokens]\nmax_lifetime_secs = 901\n", doc());
    assert!(matches!(
        Policy::parse_toml(&long),
        Err(PolicyError::LifetimeTooLong {
            max: 900,
            actual: 901,
            ..
        })
    ));
    let unknown = format!("{}\nsurprise = 1\n", doc());
    assert!(matches!(
        Policy::parse_toml(&unknown),
        Err(PolicyError::Syntax { .. })
    ));
    let dup = format!("{}\n[[workloads]]\nname = \"hello\"\ndigests = []\n", doc());
    assert!(matches!(
        Policy::parse_toml(&dup),
        Err(PolicyError::Duplicate {
            what: "workload",
            ..
        })
    ));
    assert_eq!(Policy::parse_toml("id = \"\""), Err(PolicyError::EmptyId));
}

#[test]
fn no_group_is_a_failure() {
    let p = Policy::parse_toml(&doc().replace("[\"*\"]", "[\"only-this\"]")).unwrap();
    assert_eq!(
        p.group_for("other").unwrap_err(),
        Failure::NoGroupForHost {
            host: "other".into()
        }
    );
    assert!(p.group_for("only-this").is_ok());
}

/// Issue #12 finding 7: a group that constrains no measurement is refused at
/// load, naming the group.
#[test]
fn finding7_group_without_rules_is_refused() {
    let bare = "id = \"t\"\n[[groups]]\nname = \"open\"\nhosts = [\"*\"]\n";
    assert_eq!(
        Policy::parse_toml(bare),
        Err(PolicyError::NoMeasurementRules {
            group: "open".into()
        })
    );
    let err = Policy::parse_toml(bare).unwrap_err().to_string();
    assert!(err.contains("open") && err.contains("dangerous_accept_any_measurements"));
}

/// With the explicit flag the same group loads and affirms any quote.
#[test]
fn finding7_group_without_rules_loads_with_dangerous_flag() {
    let p = Policy::parse_toml(
        "id = \"t\"\n[[groups]]\nname = \"open\"\nhosts = [\"*\"]\ndangerous_accept_any_measurements = true\n",
    )
    .unwrap();
    let g = p.group_for("h").unwrap();
    assert!(g.dangerous_accept_any_measurements);
    assert!(g.appraise_pcrs(&PcrMap::new()).is_empty());
}

fn snp_group(snp: &str) -> String {
    format!("id = \"t\"\n[[groups]]\nname = \"tee\"\nhosts = [\"*\"]\n[groups.snp]\ndangerous_any_measurement = true\ndangerous_any_host_data = true\n{snp}")
}

/// Issue #12 finding 7: an SEV-SNP table with no TCB floor is refused.
#[test]
fn finding7_snp_group_without_tcb_floor_is_refused() {
    for snp in [
        "",
        "[groups.snp.min_reported_tcb]\nsnp = 0\nmicrocode = 0\n",
    ] {
        assert_eq!(
            Policy::parse_toml(&snp_group(snp)),
            Err(PolicyError::SnpNoTcbFloor {
                group: "tee".into()
            }),
            "{snp}"
        );
    }
    let floor = Policy::parse_toml(&snp_group("[groups.snp.min_reported_tcb]\nsnp = 8\n")).unwrap();
    assert_eq!(floor.groups[0].snp.as_ref().map(|s| s.max_vmpl), Some(0));
    let waived = Policy::parse_toml(&snp_group("dangerous_accept_any_tcb = true\n")).unwrap();
    assert!(waived.groups[0]
        .snp
        .as_ref()
        .is_some_and(|s| s.dangerous_accept_any_tcb));
}

/// An SEV-SNP-only group loads, but a TPM quote against it is refused: the
/// group has no TPM measurement rules.
#[test]
fn finding7_snp_only_group_refuses_tpm_quotes() {
    let p = Policy::parse_toml(&snp_group("[groups.snp.min_reported_tcb]\nsnp = 8\n")).unwrap();
    let g = p.group_for("h").unwrap();
    assert_eq!(
        g.appraise_pcrs(&PcrMap::new()),
        vec![Failure::NoMeasurementRules {
            group: "tee".into()
        }]
    );
}
