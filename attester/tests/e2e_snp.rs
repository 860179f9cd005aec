//! The attester's SEV-SNP path through the library, without SNP hardware:
//! a report source signing with a test VCEK stands in for /dev/sev-guest
//! (the binary has no such option), a local KDS serves the test chain and
//! CRL, and the real broker (test ARK trusted via
//! `trust.dangerous_snp_test_roots`) appraises. The gate's decision —
//! `snp::obtain_token` — must yield a verified token for an allowed
//! workload and refuse otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../verifier-lib/tests/snp_support/mod.rs"]
mod snp_support;

use std::sync::Arc;

use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use snp_support::*;
use verifier_lib::api::SnpEvidence;
use verifier_lib::snp::Product;
use verifier_lib::token::ClaimValue;
use writ_attester::client::BrokerClient;
use writ_attester::commands::{resolve_program, CommandError};
use writ_attester::snp::{self, SnpGuestError, SnpReportSource};
use writ_broker::clock::OffsetClock;
use writ_broker::config::{Config, SnpTestRoot};

const PRODUCT: Product = Product::Milan;

/// A guest whose "secure processor" is the test VCEK.
struct TestGuest {
    spec: ReportSpec,
    certificates: Option<(Vec<u8>, Vec<u8>)>,
}

impl SnpReportSource for TestGuest {
    fn evidence(&mut self, report_data: [u8; 64]) -> Result<SnpEvidence, SnpGuestError> {
        let mut s = self.spec.clone();
        s.report_data = report_data;
        let (vcek, chain) = match &self.certificates {
            Some((leaf, ask)) => (Some(leaf.clone()), vec![ask.clone()]),
            None => (None, Vec::new()),
        };
        Ok(SnpEvidence {
            report: signed_report(&s),
            vcek,
            chain,
        })
    }
}

struct Running {
    url: String,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

/// KDS and broker on loopback, served by a runtime of their own (the
/// attester's client is blocking).
fn start(c: &TestChain, program_digest: [u8; 32], crl_revokes_vcek: bool) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let revoked: Vec<&[u8]> = if crl_revokes_vcek {
        vec![&c.leaf_serial]
    } else {
        Vec::new()
    };
    let crl_der = crl(PRODUCT, &revoked, now - 60, now + 86_400, rsa_key(0));
    let chain_pem: String = [&c.ask, &c.ark]
        .iter()
        .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.to_vec())))
        .collect();
    let leaf = c.leaf.clone();
    let kds = axum::Router::new().route(
        "/vcek/v1/Milan/{item}",
        get(move |UrlPath(item): UrlPath<String>| {
            let (crl_der, chain_pem, leaf) = (crl_der.clone(), chain_pem.clone(), leaf.clone());
            async move {
                match item.as_str() {
                    "crl" => crl_der.into_response(),
                    "cert_chain" => chain_pem.into_response(),
                    h if h == hex::encode(hw_id(PRODUCT)) => leaf.into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );

    let d = dir.path();
    std::fs::write(d.join("ark.der"), &c.ark).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        format!(
            "id = \"attester-snp\"\n[[groups]]\nname = \"snp\"\nhosts = [\"*\"]\n[groups.snp]\n\
             allowed_measurements = [\"{}\"]\ndangerous_allow_extra_root = true\n\
             allowed_host_data = [\"{}\"]\n\
             [groups.snp.min_reported_tcb]\nsnp = 23\n\
             [[workloads]]\nname = \"true\"\ndigests = [\"{}\"]\n",
            hex::encode([0xab; 48]),
            hex::encode([0u8; 32]),
            hex::encode(program_digest)
        ),
    )
    .unwrap();
    let url = rt.block_on(async {
        let kds_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kds_url = format!("http://{}", kds_listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(kds_listener, kds).await;
        });
        let mut cfg = Config::default();
        cfg.storage.url = format!("sqlite://{}", d.join("writ.db").display());
        cfg.keys.dir = d.join("keys");
        cfg.policy.file = d.join("policy.toml");
        cfg.trust.bundled_manufacturers = false;
        cfg.trust.dangerous_snp_test_roots = vec![SnpTestRoot {
            product: "Milan".into(),
            file: d.join("ark.der"),
        }];
        cfg.snp.kds_url = kds_url;
        cfg.snp.cache_dir = d.join("kds-cache");
        let state = writ_broker::server::build_state(cfg, Arc::new(OffsetClock::default()))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, writ_broker::app(state)).await;
        });
        url
    });
    Running {
        url,
        _dir: dir,
        _rt: rt,
    }
}

fn guest(c: &TestChain) -> TestGuest {
    let mut spec = report_spec(c);
    spec.measurement = [0xab; 48];
    TestGuest {
        spec,
        certificates: None,
    }
}

#[test]
fn gate_gets_a_verified_token_from_snp_evidence_and_refuses_otherwise() {
    let c = chain(PRODUCT);
    let program = resolve_program("true").unwrap();
    let running = start(&c, program.digest, false);
    let client = BrokerClient::new(&running.url, None).unwrap();
    let pins = tempfile::tempdir().unwrap();

    // Allowed: a token for `true`, verified by the attester, with cpu claims.
    let mut g = guest(&c);
    let (_, verified) = snp::obtain_token(
        &client,
        pins.path(),
        "writ-broker",
        "true",
        &program,
        &mut g,
    )
    .unwrap();
    assert_eq!(verified.claims.sub, snp::host_id(&mut g).unwrap());
    assert_eq!(
        verified.claims.appraisal.submods["cpu"]["measurement"],
        ClaimValue::Bytes(vec![0xab; 48])
    );
    // With the certificate table from the "host" as well.
    g.certificates = Some((c.leaf.clone(), c.ask.clone()));
    snp::obtain_token(
        &client,
        pins.path(),
        "writ-broker",
        "true",
        &program,
        &mut g,
    )
    .unwrap();
    // Attest binding a key (what `--evidence both` does with the vTPM AK).
    let a = snp::attest(&client, &mut g, Some(b"\x00\x02ak")).unwrap();
    assert_eq!(a.verdict, "affirming");

    // A guest with another measurement is refused: no token.
    let mut bad = guest(&c);
    bad.spec.measurement = [0xcd; 48];
    let err = snp::obtain_token(
        &client,
        pins.path(),
        "writ-broker",
        "true",
        &program,
        &mut bad,
    )
    .unwrap_err();
    assert!(
        matches!(&err, CommandError::Broker(writ_attester::client::ClientError::Refused { code, .. }) if code == "denied"),
        "{err}"
    );
    // A program the policy does not list is refused.
    let other = resolve_program("false").unwrap();
    assert!(
        snp::obtain_token(&client, pins.path(), "writ-broker", "true", &other, &mut g).is_err()
    );
    // A token from the right broker but for the wrong issuer is not accepted.
    let err = snp::obtain_token(
        &client,
        pins.path(),
        "another-issuer",
        "true",
        &program,
        &mut g,
    )
    .unwrap_err();
    assert!(matches!(err, CommandError::TokenInvalid(_)), "{err}");
}

#[test]
fn revoked_vcek_gets_no_token() {
    let c = chain(PRODUCT);
    let program = resolve_program("true").unwrap();
    let running = start(&c, program.digest, true);
    let client = BrokerClient::new(&running.url, None).unwrap();
    let pins = tempfile::tempdir().unwrap();
    let err = snp::obtain_token(
        &client,
        pins.path(),
        "writ-broker",
        "true",
        &program,
        &mut guest(&c),
    )
    .unwrap_err();
    let reasons = writ_attester::commands::denial_reasons(&err);
    assert!(reasons.contains("revoked"), "{reasons}");
}
