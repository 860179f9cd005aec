//! Signed policies (docs/policy.md, "Signed policies"): operator keys made
//! with openssl, `writ-broker policy sign`, and `policy activate` refusing
//! unsigned, wrongly signed and rolled-back policies while the active one
//! stays; a broker re-checks the stored signature whenever it loads a
//! version, keeps its policy when the check fails, and names the signer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use writ_broker::clock::OffsetClock;
use writ_broker::config::Config;

fn writ(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_writ-broker"))
        .args(args)
        .env_remove("WRIT_POLICY__SIGNING_KEYS")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A P-256 operator key made by openssl (PKCS#8, mode 0600) and its public
/// key (SPKI PEM).
fn operator_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(ok.success());
    (key, public)
}

fn policy(dir: &Path, name: &str, version: Option<u64>) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let version = version.map_or_else(String::new, |v| format!("version = {v}\n"));
    std::fs::write(&path, format!("id = \"{name}\"\n{version}")).unwrap();
    path
}

fn sign(file: &Path, key: &Path) -> String {
    let out = writ(&[
        "policy",
        "sign",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    text(&out)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn signed_policies_are_checked_at_activation_and_at_every_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (op_key, op_pub) = operator_key(d, "operator");
    let (stranger_key, _) = operator_key(d, "stranger");
    let db = format!("sqlite://{}", d.join("writ.db").display());
    let cfg_path = d.join("broker.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[storage]\nurl = \"{db}\"\n[keys]\ndir = \"{}\"\n[policy]\nfile = \"\"\nsigning_keys = [\"{}\"]\n",
            d.join("keys").display(),
            op_pub.display()
        ),
    )
    .unwrap();
    let cfg = s(&cfg_path);
    let activate = |file: &Path| writ(&["policy", "activate", s(file), "--config", cfg]);
    let history = || {
        let out = writ(&["policy", "history", "--json", "--config", cfg]);
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };

    // An unversioned policy cannot be signed.
    let bare = policy(d, "bare", None);
    let out = writ(&["policy", "sign", s(&bare), "--key", s(&op_key)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // v1, signed by the operator: activated, the signer named.
    let v1 = policy(d, "v1", Some(1));
    let signed = sign(&v1, &op_key);
    let kid = signed
        .split("with key ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let out = activate(&v1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("signature by {kid} verified")),
        "{}",
        text(&out)
    );
    assert_eq!(history().len(), 1);

    // Refused, each with its reason, and v1 stays active.
    let unsigned = policy(d, "unsigned", Some(2));
    let out = activate(&unsigned);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("is not signed"), "{}", text(&out));
    let foreign = policy(d, "foreign", Some(2));
    sign(&foreign, &stranger_key);
    let out = activate(&foreign);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no such key"), "{}", text(&out));
    let altered = policy(d, "altered", Some(2));
    sign(&altered, &op_key);
    std::fs::write(
        &altered,
        "id = \"altered\"\nversion = 2\n[tokens]\ndefault_lifetime_secs = 60\n",
    )
    .unwrap();
    let out = activate(&altered);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("does not verify"), "{}", text(&out));
    // A signature over another file, given explicitly, does not verify either.
    let other = policy(d, "other", Some(2));
    let out = writ(&[
        "policy",
        "activate",
        s(&other),
        "--signature",
        &format!("{}.sig", v1.display()),
        "--config",
        cfg,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The shadow slot takes no unsigned candidate either.
    let out = writ(&["policy", "shadow", s(&unsigned), "--config", cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(history().len(), 1);

    // v3 moves forward; a validly signed v2 would roll back: refused.
    let v3 = policy(d, "v3", Some(3));
    sign(&v3, &op_key);
    assert_eq!(activate(&v3).status.code(), Some(0));
    let v2 = policy(d, "v2", Some(2));
    sign(&v2, &op_key);
    let out = activate(&v2);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("not newer than the active version 3"),
        "{}",
        text(&out)
    );
    let out = writ(&["policy", "shadow", s(&v2), "--config", cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = writ(&["policy", "show", "--config", cfg]);
    assert!(
        text(&out).contains(&format!("signed by {kid}")),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("id = \"v3\""), "{}", text(&out));
    assert_eq!(history().len(), 2);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config::load(Some(&cfg_path), Config::process_env()).unwrap();
    let state = rt
        .block_on(writ_broker::server::build_state(
            config.clone(),
            Arc::new(OffsetClock::default()),
        ))
        .unwrap();
    let current = state.policy.current();
    assert_eq!((current.id.as_str(), current.version), ("v3", Some(3)));
    assert_eq!(current.signer.as_deref(), Some(kid.as_str()));

    // Someone activates an unsigned v4 through the store without the
    // signing keys: the running broker re-checks it at load, refuses it
    // and keeps v3; a broker starting now refuses to start on it.
    let v4 = policy(d, "v4", Some(4));
    let out = writ(&["policy", "activate", s(&v4), "--db", &db]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = rt.block_on(state.policy.refresh()).unwrap_err();
    assert!(err.to_string().contains("is not signed"), "{err}");
    assert_eq!(state.policy.current().id, "v3");
    let err = rt
        .block_on(writ_broker::server::build_state(
            config.clone(),
            Arc::new(OffsetClock::default()),
        ))
        .err()
        .unwrap();
    assert!(err.to_string().contains("is not signed"), "{err}");

    // The policy file of a single-broker set-up is imported with FILE.sig.
    let v5 = policy(d, "v5", Some(5));
    let mut with_file = config;
    with_file.policy.file = v5.clone();
    let err = rt
        .block_on(writ_broker::server::build_state(
            with_file.clone(),
            Arc::new(OffsetClock::default()),
        ))
        .err()
        .unwrap();
    assert!(err.to_string().contains("is not signed"), "{err}");
    sign(&v5, &op_key);
    let state = rt
        .block_on(writ_broker::server::build_state(
            with_file,
            Arc::new(OffsetClock::default()),
        ))
        .unwrap();
    let current = state.policy.current();
    assert_eq!(
        (current.id.as_str(), current.signer.as_deref()),
        ("v5", Some(kid.as_str()))
    );
}
