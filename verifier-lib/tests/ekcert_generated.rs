//! Chains generated at test time with the openssl CLI, for what the real
//! vectors do not cover: RSA-PSS and ECDSA P-384 signatures, and the path
//! checks (CA flag, keyUsage, pathLenConstraint, unhandled critical
//! extensions, depth limit). Times are taken from the generated certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use verifier_lib::crypto::{Curve, PublicKey};
use verifier_lib::ekcert::{
    parse_ek_certificate, verify_ek_chain, EkCertError, TrustStore, MAX_CHAIN_DEPTH,
};

const CA: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n";
const LEAF: &str = "basicConstraints=critical,CA:FALSE\n";
const PSS_SHA256: &[&str] = &[
    "-sha256",
    "-sigopt",
    "rsa_padding_mode:pss",
    "-sigopt",
    "rsa_pss_saltlen:32",
];

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl CLI must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Key types: "rsa" (2048) or an EC curve name ("P-256", "P-384").
fn new_key(dir: &Path, name: &str, kind: &str) {
    let key = format!("{name}.key");
    if kind == "rsa" {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key,
            ],
        );
    } else {
        let curve = format!("ec_paramgen_curve:{kind}");
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &curve,
                "-out",
                &key,
            ],
        );
    }
}

/// Create `name.pem` with key type `kind`, signed by `issuer` (or self-signed),
/// with extension lines `ext` and signing options `sig`. Returns the DER.
fn cert(
    dir: &Path,
    name: &str,
    subject: &str,
    kind: &str,
    issuer: Option<&str>,
    ext: &str,
    sig: &[&str],
) -> Vec<u8> {
    new_key(dir, name, kind);
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem = format!("{name}.pem");
    let cnf = format!("{name}.cnf");
    std::fs::write(dir.join(&cnf), format!("[v3]\n{ext}")).unwrap();
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
    );
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-days",
        "3650",
        "-extfile",
        &cnf,
        "-extensions",
        "v3",
        "-out",
        &pem,
    ];
    let (ca_pem, ca_key);
    match issuer {
        Some(i) => {
            ca_pem = format!("{i}.pem");
            ca_key = format!("{i}.key");
            args.extend(["-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial"]);
        }
        None => args.extend(["-signkey", &key]),
    }
    args.extend(sig);
    openssl(dir, &args);
    let text = std::fs::read(dir.join(&pem)).unwrap();
    pem::parse(text).unwrap().into_contents()
}

fn root_store(der: &[u8]) -> TrustStore {
    let mut store = TrustStore::empty();
    store.add_root_pem_or_der(der).unwrap();
    store
}

fn now_for(der: &[u8]) -> i64 {
    parse_ek_certificate(der).unwrap().not_before + 60
}

#[test]
fn rsa_pss_and_ecdsa_p384_chains_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    // RSA-PSS (SHA-256, salt 32) root and intermediate over an RSA EK.
    let root = cert(d, "pss_root", "/CN=PSS Root", "rsa", None, CA, PSS_SHA256);
    let inter = cert(
        d,
        "pss_int",
        "/CN=PSS Int",
        "rsa",
        Some("pss_root"),
        CA,
        PSS_SHA256,
    );
    let ek = cert(d, "pss_ek", "/", "rsa", Some("pss_int"), LEAF, PSS_SHA256);
    let ek = parse_ek_certificate(&ek).unwrap();
    assert!(matches!(ek.public_key, PublicKey::Rsa { .. }));
    let chain = verify_ek_chain(&ek, &[inter], &root_store(&root), now_for(&root)).unwrap();
    assert_eq!(chain.chain.len(), 2);

    // ECDSA P-384 / SHA-384 root over a P-384 EK, and P-256 / SHA-256.
    for (curve, hash, expected) in [
        ("P-384", "-sha384", Curve::P384),
        ("P-256", "-sha256", Curve::P256),
    ] {
        let r = format!("ec_root_{curve}");
        let root = cert(d, &r, "/CN=EC Root", curve, None, CA, &[hash]);
        let ek = cert(
            d,
            &format!("ec_ek_{curve}"),
            "/",
            curve,
            Some(&r),
            LEAF,
            &[hash],
        );
        let ek = parse_ek_certificate(&ek).unwrap();
        assert!(matches!(ek.public_key, PublicKey::Ec { curve, .. } if curve == expected));
        verify_ek_chain(&ek, &[], &root_store(&root), now_for(&root)).unwrap();
    }
}

#[test]
fn pss_with_other_salt_length_is_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let salt20 = [
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:20",
    ];
    let root = cert(d, "root", "/CN=Root", "rsa", None, CA, &salt20);
    let ek = cert(d, "ek", "/", "rsa", Some("root"), LEAF, &salt20);
    let ek = parse_ek_certificate(&ek).unwrap();
    let r = verify_ek_chain(&ek, &[], &root_store(&root), now_for(&root));
    assert!(
        matches!(r, Err(EkCertError::UnsupportedSignatureAlgorithm { .. })),
        "{r:?}"
    );
}

#[test]
fn issuer_constraints_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sha = ["-sha256"];
    let root = cert(d, "root", "/CN=Root", "P-256", None, CA, &sha);
    let store = root_store(&root);
    let now = now_for(&root);

    // An intermediate without basicConstraints CA:TRUE.
    let not_ca = cert(
        d,
        "not_ca",
        "/CN=Not CA",
        "P-256",
        Some("root"),
        "keyUsage=critical,keyCertSign\n",
        &sha,
    );
    let ek =
        parse_ek_certificate(&cert(d, "ek1", "/", "P-256", Some("not_ca"), LEAF, &sha)).unwrap();
    let r = verify_ek_chain(&ek, &[not_ca], &store, now);
    assert!(matches!(r, Err(EkCertError::NotACa { .. })), "{r:?}");

    // A CA whose keyUsage lacks keyCertSign.
    let no_sign = cert(
        d,
        "no_sign",
        "/CN=No Sign",
        "P-256",
        Some("root"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n",
        &sha,
    );
    let ek =
        parse_ek_certificate(&cert(d, "ek2", "/", "P-256", Some("no_sign"), LEAF, &sha)).unwrap();
    let r = verify_ek_chain(&ek, &[no_sign], &store, now);
    assert!(
        matches!(r, Err(EkCertError::KeyUsageNoCertSign { .. })),
        "{r:?}"
    );

    // pathLenConstraint 0 with another CA below it.
    let len0 = cert(
        d,
        "len0",
        "/CN=Len0",
        "P-256",
        Some("root"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n",
        &sha,
    );
    let below = cert(d, "below", "/CN=Below", "P-256", Some("len0"), CA, &sha);
    let ek =
        parse_ek_certificate(&cert(d, "ek3", "/", "P-256", Some("below"), LEAF, &sha)).unwrap();
    let r = verify_ek_chain(&ek, &[len0.clone(), below], &store, now);
    assert!(
        matches!(
            r,
            Err(EkCertError::PathLenExceeded {
                path_len: 0,
                actual: 1,
                ..
            })
        ),
        "{r:?}"
    );
    // Directly under the pathlen:0 CA it is fine.
    let ek = parse_ek_certificate(&cert(d, "ek4", "/", "P-256", Some("len0"), LEAF, &sha)).unwrap();
    verify_ek_chain(&ek, &[len0], &store, now).unwrap();

    // A critical extension nobody handles, on the EK.
    let ek = parse_ek_certificate(&cert(
        d,
        "ek5",
        "/",
        "P-256",
        Some("root"),
        "basicConstraints=critical,CA:FALSE\n1.2.3.4=critical,DER:05:00\n",
        &sha,
    ))
    .unwrap();
    let r = verify_ek_chain(&ek, &[], &store, now);
    assert!(
        matches!(r, Err(EkCertError::UnhandledCriticalExtension { ref oid, .. }) if oid == "1.2.3.4"),
        "{r:?}"
    );
}

#[test]
fn depth_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sha = ["-sha256"];
    let root = cert(d, "ca0", "/CN=CA 0", "P-256", None, CA, &sha);
    let mut presented = Vec::new();
    for i in 1..=MAX_CHAIN_DEPTH {
        let subject = format!("/CN=CA {i}");
        presented.push(cert(
            d,
            &format!("ca{i}"),
            &subject,
            "P-256",
            Some(&format!("ca{}", i - 1)),
            CA,
            &sha,
        ));
    }
    let now = now_for(&root);
    let store = root_store(&root);
    // EK under ca{MAX-1}: MAX issuers including the root — accepted.
    let ok = parse_ek_certificate(&cert(
        d,
        "ek_ok",
        "/",
        "P-256",
        Some(&format!("ca{}", MAX_CHAIN_DEPTH - 1)),
        LEAF,
        &sha,
    ))
    .unwrap();
    assert_eq!(
        verify_ek_chain(&ok, &presented, &store, now)
            .unwrap()
            .chain
            .len(),
        MAX_CHAIN_DEPTH
    );
    // EK under ca{MAX}: one issuer too many.
    let deep = parse_ek_certificate(&cert(
        d,
        "ek_deep",
        "/",
        "P-256",
        Some(&format!("ca{MAX_CHAIN_DEPTH}")),
        LEAF,
        &sha,
    ))
    .unwrap();
    let r = verify_ek_chain(&deep, &presented, &store, now);
    assert!(
        matches!(r, Err(EkCertError::ChainTooLong { max }) if max == MAX_CHAIN_DEPTH),
        "{r:?}"
    );
}
