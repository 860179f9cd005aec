//! A relying party that links the gate must not link the TPM or SEV-SNP
//! stacks: walk the workspace `Cargo.lock` from `writ-gate` (every target and
//! feature the lock file records, so a superset of `cargo tree -p writ-gate`)
//! and check that neither `tss-esapi` nor `sev` is reachable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

const LOCK: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));

/// `name version` → dependency entries, as written in the lock file.
fn packages() -> BTreeMap<(String, String), Vec<String>> {
    let lock: toml::Value = toml::from_str(LOCK).unwrap();
    lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_owned();
            let version = p["version"].as_str().unwrap().to_owned();
            let deps = p
                .get("dependencies")
                .and_then(|d| d.as_array())
                .map(|d| d.iter().map(|e| e.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            ((name, version), deps)
        })
        .collect()
}

/// Every package name reachable from `root`.
fn reachable(root: &str) -> BTreeSet<String> {
    let all = packages();
    let resolve = |entry: &str| -> Vec<(String, String)> {
        let mut parts = entry.split(' ');
        let name = parts.next().unwrap_or_default();
        let version = parts.next();
        all.keys()
            .filter(|(n, v)| n == name && version.is_none_or(|want| want == v))
            .cloned()
            .collect()
    };
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut todo = resolve(root);
    assert!(!todo.is_empty(), "{root} is not in Cargo.lock");
    while let Some(p) = todo.pop() {
        if seen.insert(p.clone()) {
            for d in &all[&p] {
                let found = resolve(d);
                assert!(
                    !found.is_empty(),
                    "{d} (needed by {p:?}) is not in Cargo.lock"
                );
                todo.extend(found);
            }
        }
    }
    seen.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn the_gate_links_neither_tss_esapi_nor_sev() {
    let names = reachable("writ-gate");
    assert!(names.contains("verifier-lib") && names.contains("axum"));
    for forbidden in ["tss-esapi", "tss-esapi-sys", "sev", "attester"] {
        assert!(!names.contains(forbidden), "writ-gate reaches {forbidden}");
    }
}

#[test]
fn the_walk_does_find_them_from_the_attester() {
    // The same walk from the attester reaches both: the check above can fail.
    let names = reachable("attester");
    assert!(names.contains("tss-esapi") && names.contains("sev"));
}
