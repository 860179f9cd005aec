//! A Rego policy through the whole broker on swtpm (issue #17 step 1): a
//! group whose TOML rules allow two values of PCR 16 and whose Rego module
//! allows one. The host with that value is trusted; the other fails with
//! the module's reason in the host record (operators) and only the rule
//! name in the client's answer. A module that runs out of its instruction
//! budget fails the host too (fail closed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{fresh_pcrs, Host};
use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use verifier_lib::crypto::HashAlg;
use writ_attester::commands;
use writ_attester::tpm::AkAlg;

fn rego_table(source: &str, budget: u64) -> String {
    format!(
        "[groups.rego]\nquote_pcrs = [16]\nmax_instructions = {budget}\nsource = '''\n{source}\n'''\n"
    )
}

#[test]
fn rego_module_decides_next_to_toml_rules() {
    let (pcrs, roots) = fresh_pcrs();
    let fresh16 = hex::encode(&pcrs[&16]);
    let extended16 = hex::encode(HashAlg::Sha256.digest_parts([&pcrs[&16][..], &[0x5a; 32]]));
    let narrow = format!("16 = [\"{fresh16}\"]");
    let base = policy_toml("rego", &pcrs, &[]);
    assert!(base.contains(&narrow));
    let module = format!(
        "package writ.fleet\n\
         default allow := false\n\
         allow if input.tpm.pcrs.sha256[\"16\"] == \"{fresh16}\"\n\
         deny contains sprintf(\"PCR 16 is %s\", [v]) if {{\n  v := input.tpm.pcrs.sha256[\"16\"]\n  v != \"{fresh16}\"\n}}"
    );
    let policy = base.replace(&narrow, &format!("16 = [\"{fresh16}\", \"{extended16}\"]"))
        + &rego_table(&module, 100_000);
    let broker = TestBroker::start(BrokerOptions {
        policy,
        ek_roots_pem: roots,
        bundled_manufacturers: false,
    })
    .unwrap();
    let a = Host::new(&broker.url());
    let b = Host::distinct(&broker.url());
    b.extend_pcr16();
    assert_eq!(hex::encode(&b.pcrs()[&16]), extended16);
    for h in [&a, &b] {
        commands::enroll(&h.settings, AkAlg::EccP256).unwrap();
    }
    let ra = commands::attest(&a.settings).unwrap();
    assert_eq!(
        (ra.verdict.as_str(), ra.host_status.as_str()),
        ("affirming", "trusted"),
        "{ra:?}"
    );
    let rb = commands::attest(&b.settings).unwrap();
    assert_eq!(
        (rb.verdict.as_str(), rb.host_status.as_str()),
        ("contraindicated", "failed"),
        "{rb:?}"
    );
    // The client sees the rule, not the module's text.
    let public = serde_json::to_value(&rb.failures).unwrap();
    assert_eq!(public, serde_json::json!([{"rule": "rego_denied"}]));
    // Operators see the reason, the package and the group.
    let hb = broker
        .block_on(broker.store.host(&b.state().host_id))
        .unwrap()
        .unwrap();
    let failures: serde_json::Value =
        serde_json::from_str(hb.last_failure.as_deref().unwrap()).unwrap();
    assert_eq!(
        failures,
        serde_json::json!([{
            "rule": "rego_denied",
            "group": "default",
            "package": "writ.fleet",
            "reason": format!("PCR 16 is {extended16}"),
        }])
    );
    // No token for the failed host.
    assert!(commands::attest(&b.settings).unwrap().verdict == "contraindicated");
}

#[test]
fn a_module_out_of_budget_fails_the_host() {
    let (pcrs, roots) = fresh_pcrs();
    let spin =
        "package writ.spin\nallow if count([x | some i in numbers.range(1, 100000); x := i]) > 0";
    let policy = policy_toml("spin", &pcrs, &[]) + &rego_table(spin, 5_000);
    let broker = TestBroker::start(BrokerOptions {
        policy,
        ek_roots_pem: roots,
        bundled_manufacturers: false,
    })
    .unwrap();
    let a = Host::new(&broker.url());
    commands::enroll(&a.settings, AkAlg::EccP256).unwrap();
    let r = commands::attest(&a.settings).unwrap();
    assert_eq!(
        (r.verdict.as_str(), r.host_status.as_str()),
        ("contraindicated", "failed"),
        "{r:?}"
    );
    assert_eq!(
        serde_json::to_value(&r.failures).unwrap(),
        serde_json::json!([{"rule": "rego_error"}])
    );
}
