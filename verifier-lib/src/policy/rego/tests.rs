#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;
use crate::policy::Policy;

fn raw(source: &str) -> RawRego {
    RawRego {
        source: source.to_owned(),
        quote_pcrs: None,
        max_instructions: None,
        boot_aggregate: None,
    }
}

fn load(source: &str) -> Result<RegoRules, PolicyError> {
    RegoRules::load("g", &raw(source))
}

const PCR0: &str = r#"
package writ.fleet

default allow := false

allow if input.tpm.pcrs.sha256["0"] == "aa"

deny contains msg if {
    input.tpm.pcrs.sha256["7"] != "bb"
    msg := sprintf("PCR 7 is %s", [input.tpm.pcrs.sha256["7"]])
}
"#;

fn tpm_input(p0: &str, p7: &str) -> serde_json::Value {
    json!({"tee": "tpm", "tpm": {"pcrs": {"sha256": {"0": p0, "7": p7}}}})
}

#[test]
fn allow_and_deny_reasons_become_the_verdict() {
    let r = load(PCR0).unwrap();
    assert_eq!(r.package, "writ.fleet");
    assert_eq!(
        r.evaluate(tpm_input("aa", "bb")).unwrap(),
        RegoVerdict {
            allow: true,
            deny: vec![]
        }
    );
    assert!(r.appraise("g", tpm_input("aa", "bb")).is_empty());
    // allow false and no reason: one failure saying so.
    let f = r.appraise("g", tpm_input("00", "bb"));
    assert_eq!(
        f,
        vec![Failure::RegoDenied {
            group: "g".into(),
            package: "writ.fleet".into(),
            reason: "allow is not true".into()
        }]
    );
    // deny wins over allow.
    let f = r.appraise("g", tpm_input("aa", "cc"));
    assert_eq!(
        f,
        vec![Failure::RegoDenied {
            group: "g".into(),
            package: "writ.fleet".into(),
            reason: "PCR 7 is cc".into()
        }]
    );
}

#[test]
fn a_module_without_deny_or_allow_denies() {
    let r = load("package p\nx := 1\n").unwrap();
    let v = r.evaluate(json!({})).unwrap();
    assert!(!v.allow);
    assert!(v.deny.is_empty());
    assert_eq!(r.appraise("g", json!({})).len(), 1);
}

#[test]
fn missing_input_is_undefined_not_an_error() {
    let r = load(PCR0).unwrap();
    // No tpm at all (an SNP input): allow is undefined → false; the deny
    // rule's body is undefined → no reason.
    let v = r.evaluate(json!({"tee": "snp", "tpm": null})).unwrap();
    assert!(!v.allow);
}

#[test]
fn the_budget_bounds_evaluation_and_fails_closed() {
    let spin = r#"
package spin
allow if {
    count([x | some i in numbers.range(1, 1000000); x := i * 2]) > 0
}
"#;
    let r = RegoRules::load(
        "g",
        &RawRego {
            source: spin.into(),
            quote_pcrs: None,
            max_instructions: Some(10_000),
            boot_aggregate: None,
        },
    )
    .unwrap();
    assert_eq!(
        r.evaluate(json!({})),
        Err(RegoEvalError::Budget { limit: 10_000 })
    );
    let f = r.appraise("g", json!({}));
    assert!(
        matches!(&f[..], [Failure::RegoError { reason, .. }] if reason.contains("10000")),
        "{f:?}"
    );
}

#[test]
fn output_of_the_wrong_type_fails_closed() {
    let r = load("package p\nallow := \"yes\"\n").unwrap();
    // The entry module compares allow with true: a string is not true.
    assert!(!r.evaluate(json!({})).unwrap().allow);
    let r = load("package p\nallow := true\ndeny contains 7 if true\n").unwrap();
    assert_eq!(
        r.evaluate(json!({})),
        Err(RegoEvalError::DenyNotString { actual: "7".into() })
    );
}

#[test]
fn load_refuses_bad_modules_with_typed_errors() {
    let err = |src: &str| match load(src) {
        Err(PolicyError::Rego { group, reason }) => {
            assert_eq!(group, "g");
            reason
        }
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        err("package p\nallow if {"),
        RegoLoadError::Compile { .. }
    ));
    assert!(matches!(
        err("package writ_entry\nallow := true\n"),
        RegoLoadError::BadPackage { .. }
    ));
    assert_eq!(
        err("package p\nallow if rand.intn(\"x\", 2) == 1\n"),
        RegoLoadError::NonDeterministic {
            builtin: "rand.intn"
        }
    );
    // Builtins regorus is built without do not compile.
    assert!(matches!(
        err("package p\nallow if time.now_ns() > 0\n"),
        RegoLoadError::Compile { .. }
    ));
    assert!(matches!(
        err("package p\nallow if http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1\"}).status_code == 200\n"),
        RegoLoadError::Compile { .. }
    ));
    let big = format!("package p\n# {}\n", "x".repeat(MAX_SOURCE_BYTES));
    assert!(matches!(err(&big), RegoLoadError::TooLarge { .. }));
    let bad_pcr = RegoRules::load(
        "g",
        &RawRego {
            source: "package p\nallow := true\n".into(),
            quote_pcrs: Some(vec![0, 24]),
            max_instructions: None,
            boot_aggregate: None,
        },
    );
    assert!(matches!(
        bad_pcr,
        Err(PolicyError::Rego {
            reason: RegoLoadError::BadPcr { pcr: 24 },
            ..
        })
    ));
    let bad_budget = RegoRules::load(
        "g",
        &RawRego {
            source: "package p\nallow := true\n".into(),
            quote_pcrs: None,
            max_instructions: Some(0),
            boot_aggregate: None,
        },
    );
    assert!(matches!(
        bad_budget,
        Err(PolicyError::Rego {
            reason: RegoLoadError::BadBudget { actual: 0, .. },
            ..
        })
    ));
}

#[test]
fn a_policy_group_with_only_rego_loads_and_quotes_its_pcrs() {
    let text = r#"
id = "rego-only"
[[groups]]
name = "fleet"
hosts = ["*"]
[groups.rego]
quote_pcrs = [0, 7, 10]
source = '''
package writ.fleet
allow if input.tpm.pcrs.sha256["0"] == "aa"
'''
"#;
    let p = Policy::parse_toml(text).unwrap();
    let g = &p.groups[0];
    assert!(g.has_tpm_measurement_rules());
    assert!(g.appraises_ima());
    assert_eq!(
        g.pcr_selection(),
        vec![(crate::crypto::HashAlg::Sha256, vec![0, 7, 10])]
    );
    // The same document parses to an equal policy (the program is not
    // compared, its source is).
    assert_eq!(p, Policy::parse_toml(text).unwrap());
    let bad = text.replace("allow if", "allow iff");
    assert!(matches!(
        Policy::parse_toml(&bad),
        Err(PolicyError::Rego { .. })
    ));
}

/// Regression (fuzz target rego_module): 66 unclosed braces kept the Rego
/// parser busy past libFuzzer's 10 s timeout (its time doubles with each
/// level of `{`/`[`). Deep nesting is refused before parsing.
#[test]
fn deep_nesting_is_refused_before_the_parser() {
    let src = format!(
        "package writ.snp\nallow if {{\n    input!={}np.measurement\n}}\n",
        "{".repeat(66)
    );
    assert!(matches!(
        load(&src),
        Err(PolicyError::Rego {
            reason: RegoLoadError::TooDeep {
                max: MAX_NESTING,
                line: 3
            },
            ..
        })
    ));
    // Brackets in strings and comments do not count; real nesting within
    // the limit loads.
    let fine = format!(
        "package p\n# {open}\nx := \"{open}\"\nallow if {{ {a}1{b} == 1 }}\n",
        open = "{".repeat(80),
        a = "(".repeat(MAX_NESTING - 1),
        b = ")".repeat(MAX_NESTING - 1)
    );
    assert!(load(&fine).is_ok(), "{:?}", load(&fine).err());
}

/// Regression (fuzz target rego_module): a number literal with a huge
/// exponent (`0e62244444`) kept regorus busy building the number past
/// libFuzzer's 10 s timeout. Such literals are refused before parsing.
#[test]
fn huge_number_literals_are_refused_before_the_parser() {
    let refused = |src: &str| {
        matches!(
            load(src),
            Err(PolicyError::Rego {
                reason: RegoLoadError::NumberTooLarge {
                    max_chars: MAX_NUMBER_CHARS,
                    max_exponent: MAX_NUMBER_EXPONENT,
                    line: 2
                },
                ..
            })
        )
    };
    assert!(refused("package p\nallow if { 3*0e62244444 == 0 }\n"));
    assert!(refused("package p\nallow if { 1E-99999 == 0 }\n"));
    assert!(refused(&format!(
        "package p\nallow if {{ {} > 0 }}\n",
        "9".repeat(MAX_NUMBER_CHARS + 1)
    )));
    // Digits inside names, strings and comments are not number literals;
    // ordinary numbers and exponents within the limits load.
    let fine = format!(
        "package p\n# 1e99999999\nx2 := \"1e99999999\"\nallow if {{ input.a{n} == 1.5e300; x2 != \"\"; {d} > 0 }}\n",
        n = "9".repeat(100),
        d = "9".repeat(MAX_NUMBER_CHARS)
    );
    assert!(load(&fine).is_ok(), "{:?}", load(&fine).err());
}

/// Regression: the `rego_module` fuzz target killed the process with a
/// stack overflow on `-------…input.snp…` (hundreds of unary minus signs
/// in a row; regorus's parser recurses once per sign). Runs longer than
/// [`MAX_MINUS_RUN`] are refused before parsing; this test's own thread
/// would overflow if one reached the parser.
#[test]
fn long_runs_of_minus_signs_are_refused_before_the_parser() {
    let refused = |src: &str, at: usize| {
        matches!(
            load(src),
            Err(PolicyError::Rego {
                reason: RegoLoadError::MinusRun {
                    max: MAX_MINUS_RUN,
                    line
                },
                ..
            }) if line == at
        )
    };
    assert!(refused(
        &format!(
            "package p\nallow if {{ {}input.snp.measurement }}\n",
            "-".repeat(700)
        ),
        2
    ));
    assert!(refused(
        "package p\nallow if { x := - - - # c\n - -1; x < 0 }\n",
        3
    ));
    // Subtraction chains, two signs in a row and minus signs in strings
    // and comments load.
    let fine = format!(
        "package p\n# {c}\ns := \"{c}\"\nallow if {{\n  x := 1{sub}\n  x - -1 < 0\n  s != \"\"\n}}\n",
        c = "-".repeat(100),
        sub = " - 1".repeat(50)
    );
    assert!(load(&fine).is_ok(), "{:?}", load(&fine).err());
}

/// Regression: regorus's RVM runs a rule call by recursing on the native
/// stack in its default mode, so a chain of rules each reading the
/// previous one overflowed this test's 2 MiB thread at ≈ 50 rules in a
/// debug build (≈ 1,000 in release) and killed the process at
/// *evaluation*, on every appraisal. Evaluation runs in the RVM's
/// suspendable mode, which keeps rule frames on its own heap stack.
#[test]
fn long_rule_chains_evaluate_without_native_recursion() {
    let n = 2_000;
    let mut src = String::from("package p\nr0 := 1\n");
    for i in 1..n {
        src += &format!("r{i} := r{} + 1\n", i - 1);
    }
    src += &format!("allow if r{} == {n}\n", n - 1);
    let r = load(&src).unwrap();
    assert_eq!(
        r.evaluate(json!({})).unwrap(),
        RegoVerdict {
            allow: true,
            deny: vec![]
        }
    );
}

/// Regression: the `rego_module` fuzz target made regorus's `sprintf`
/// overflow the `u32` it reads a format width into (`"kernel
/// %8888888888888s"`: a panic with overflow checks, a wrapped
/// multi-gigabyte padding without them), and it panics on a width written
/// with non-ASCII digits. Such widths in string literals are refused at
/// load; ordinary verbs load and format.
#[test]
fn huge_format_widths_are_refused_at_load() {
    let refused = |fmt: &str| {
        let src = format!(
            "package p\ndefault allow := true\n\ndeny contains sprintf({fmt}, [input.a]) if {{\n  input.a\n}}\n"
        );
        matches!(
            load(&src),
            Err(PolicyError::Rego {
                reason: RegoLoadError::FormatWidth {
                    max_digits: MAX_FORMAT_WIDTH_DIGITS,
                    line: 4
                },
                ..
            })
        )
    };
    assert!(refused("\"kernel %8888888888888s\""));
    assert!(refused("`kernel %.99999f`"));
    assert!(refused("\"kernel %\u{0661}s\""));
    let fine = "package p\ndefault allow := true\n\ndeny contains sprintf(\"%s|%4s|%.2f|%05d|100%%\", [\"k\", \"ab\", 1.5, 7]) if {\n  input.a\n}\n";
    let r = load(fine).unwrap();
    assert_eq!(
        r.evaluate(json!({"a": true})).unwrap().deny,
        vec!["k|ab|1.50|00007|100%".to_owned()]
    );
}
