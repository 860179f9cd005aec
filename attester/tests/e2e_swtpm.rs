//! End to end on swtpm: enrollment, attestation, execution tokens and the
//! `run` gate, against a real software TPM and a real broker. Every negative
//! test ends in a deny with the specific reason, and no token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{broker_for, broker_on, fresh_pcrs, stderr, Host, Workload};
use swtpm_tests::broker::Backend;
use verifier_lib::api::{
    AppraisalResponse, AttestRequest, EnrollFinishRequest, EnrollStartRequest, EnrollStartResponse,
};
use verifier_lib::policy::public::PublicFailure as Failure;
use verifier_lib::token::{Audience, Expectations, TokenError, TokenVerifier};
use writ_attester::client::ClientError;
use writ_attester::commands::{self, CommandError};
use writ_attester::tpm::{AkAlg, EkAlg};

fn refused_code(e: &CommandError) -> &str {
    match e {
        CommandError::Broker(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a broker refusal, got {other:?}"),
    }
}

fn happy_path(ak: AkAlg, backend: Backend) {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("hello");
    let broker = broker_on(backend, &pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());

    let done = commands::enroll(&host.settings, ak).unwrap();
    assert_eq!(done.status, "enrolled");
    let appraisal = commands::attest(&host.settings).unwrap();
    assert_eq!(appraisal.verdict, "affirming", "{appraisal:?}");
    assert_eq!(appraisal.host_status, "trusted");
    assert!(appraisal.failures.is_empty());

    let out = w.run_on(&host, "hello");
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("workload hello ran"));
    // The workload received a token that verifies offline against the broker's keys.
    let token_b64 = std::fs::read_to_string(&w.marker).unwrap();
    let token = base64_decode(&token_b64);
    let keys = host.client().key_set().unwrap();
    let verified = TokenVerifier::new(keys, expectations("hello"))
        .verify(&token, now())
        .unwrap();
    assert_eq!(verified.claims.sub, done.host_id);
    assert_eq!(
        verified.claims.workload_digest.as_deref(),
        Some(&w.digest[..])
    );
    assert!(verified.claims.exp - verified.claims.iat <= 900);
    let counts = broker.block_on(broker.store.counts()).unwrap();
    assert_eq!(counts.tokens, 1);
}

#[test]
fn happy_path_ecc_ak() {
    happy_path(AkAlg::EccP256, Backend::Sqlite);
}

#[test]
fn happy_path_rsa_ak() {
    happy_path(AkAlg::Rsa2048, Backend::Sqlite);
}

/// The same path with the broker's store on PostgreSQL.
#[test]
fn happy_path_ecc_ak_on_postgres() {
    happy_path(AkAlg::EccP256, Backend::Postgres);
}

#[test]
fn pcr_extended_after_reference_denies_attest_and_run() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("pcr");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    assert_eq!(
        commands::attest(&host.settings).unwrap().verdict,
        "affirming"
    );

    host.extend_pcr16();
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.verdict, "contraindicated");
    assert_eq!(a.host_status, "failed");
    assert!(
        a.failures
            .iter()
            .any(|f| matches!(f, Failure::PcrNotAllowed { pcr: 16, .. })),
        "{:?}",
        a.failures
    );

    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("PCR 16"), "{}", stderr(&out));
    assert!(!w.ran(), "the workload must not start");
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().tokens, 0);
    // The operator view names the failure.
    let view: verifier_lib::api::HostView = host
        .client()
        .with_operator_token(swtpm_tests::broker::OPERATOR_TOKEN)
        .get(&format!("/v1/hosts/{}", host.state().host_id))
        .unwrap();
    assert_eq!(view.status, "failed");
    assert!(matches!(
        view.last_failure.as_deref(),
        Some([verifier_lib::policy::Failure::PcrNotAllowed { pcr: 16, .. }])
    ));
}

/// Issue #12 finding 6: a denied host learns the rule that failed and its
/// own PCR value, never the values the policy allows, neither in the
/// appraisal (`/v1/attest`) nor in a refused token's details (`/v1/tokens`).
#[test]
fn finding6_denied_responses_hide_allowed_pcr_values() {
    let (pcrs, roots) = fresh_pcrs();
    let allowed16 = hex::encode(&pcrs[&16]);
    let w = Workload::new("leak");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    host.extend_pcr16();
    let a = commands::attest(&host.settings).unwrap();
    assert_eq!(a.verdict, "contraindicated");
    let body = serde_json::to_string(&a).unwrap();
    assert!(body.contains("\"rule\":\"pcr_not_allowed\""), "{body}");
    assert!(body.contains("\"pcr\":16"), "{body}");
    assert!(
        !body.contains(&allowed16),
        "allowed PCR 16 value leaked: {body}"
    );

    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("PCR 16"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains(&allowed16),
        "allowed PCR 16 value leaked: {}",
        stderr(&out)
    );
    assert!(!w.ran());
}

fn post_attest(
    host: &Host,
    nonce: Vec<u8>,
    evidence: verifier_lib::api::TpmEvidence,
) -> Result<AppraisalResponse, ClientError> {
    host.client().post(
        "/v1/attest",
        &AttestRequest {
            host_id: host.state().host_id,
            nonce,
            evidence,
        },
    )
}

fn code(r: Result<AppraisalResponse, ClientError>) -> String {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn nonce_reused_is_refused() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let ch = host.challenge();
    let ev = host.quote(&ch, &ch.nonce, None);
    assert_eq!(
        post_attest(&host, ch.nonce.clone(), ev.clone())
            .unwrap()
            .verdict,
        "affirming"
    );
    assert_eq!(
        code(post_attest(&host, ch.nonce.clone(), ev)),
        "nonce_reused"
    );
}

#[test]
fn nonce_of_another_host_is_refused() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let a = Host::distinct(&broker.url());
    let b = Host::distinct(&broker.url());
    commands::enroll(&a.settings, AkAlg::EccP256).unwrap();
    commands::enroll(&b.settings, AkAlg::EccP256).unwrap();
    assert_ne!(a.state().host_id, b.state().host_id);
    let ch_a = a.challenge();
    let ev = b.quote(&ch_a, &ch_a.nonce, None);
    assert_eq!(
        code(post_attest(&b, ch_a.nonce.clone(), ev)),
        "nonce_unknown"
    );
}

#[test]
fn expired_nonce_is_refused() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let ch = host.challenge();
    let ev = host.quote(&ch, &ch.nonce, None);
    broker.clock.advance(61);
    assert_eq!(
        code(post_attest(&host, ch.nonce.clone(), ev)),
        "nonce_expired"
    );
}

#[test]
fn quote_by_another_ak_is_rejected_without_changing_the_host() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    assert_eq!(
        commands::attest(&host.settings).unwrap().host_status,
        "trusted"
    );
    let other_ak = {
        let mut tpm = host.tpm();
        let ek = tpm.create_ek(host.state().ek_alg).unwrap();
        let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
        tpm.flush_ek(ek).unwrap();
        ak
    };
    let ch = host.challenge();
    let ev = host.quote(&ch, &ch.nonce, Some(&other_ak));
    let a = post_attest(&host, ch.nonce.clone(), ev).unwrap();
    assert_eq!(a.verdict, "contraindicated");
    assert!(
        matches!(&a.failures[..], [Failure::EvidenceRejected { stage, reason }] if *stage == verifier_lib::policy::EvidenceStage::Quote && reason.contains("signature")),
        "{:?}",
        a.failures
    );
    // Unauthenticated evidence does not move the host's state.
    assert_eq!(a.host_status, "trusted");
}

#[test]
fn ek_certificate_not_chaining_is_refused() {
    let (pcrs, _roots) = fresh_pcrs();
    // No swtpm CA configured (and no bundled vendor CAs): the EK is untrusted.
    let broker = broker_for(&pcrs, &[], Vec::new());
    let host = Host::new(&broker.url());
    let e = commands::enroll(&host.settings, AkAlg::EccP256).unwrap_err();
    assert_eq!(refused_code(&e), "ek_cert_untrusted");
    assert_eq!(
        broker.block_on(broker.store.counts()).unwrap().enrollments,
        0
    );
}

/// The pieces of an enrollment, built by hand to be tampered with.
fn enroll_request(host: &Host) -> (EnrollStartRequest, writ_attester::tpm::AkBlob) {
    let mut tpm = host.tpm();
    let alg = tpm.detect_ek_alg().unwrap();
    let cert = tpm.ek_certificate(alg).unwrap().unwrap();
    let ek = tpm.create_ek(alg).unwrap();
    let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
    let req = EnrollStartRequest {
        ek_cert: cert,
        ek_chain: Vec::new(),
        ek_public: ek.public_tpm2b.clone(),
        ak_public: ak.public_tpm2b.clone(),
    };
    tpm.flush_ek(ek).unwrap();
    (req, ak)
}

#[test]
fn ek_certificate_of_another_tpm_is_refused() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let a = Host::distinct(&broker.url());
    let b = Host::distinct(&broker.url());
    let (mut req, _) = enroll_request(&a);
    let (req_b, _) = enroll_request(&b);
    req.ek_public = req_b.ek_public;
    let r: Result<EnrollStartResponse, _> = a.client().post("/v1/enroll/start", &req);
    match r {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "ek_public_mismatch"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_activate_credential_answer_is_refused() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::new(&broker.url());
    let (req, _ak) = enroll_request(&host);
    let start: EnrollStartResponse = host.client().post("/v1/enroll/start", &req).unwrap();
    let r: Result<verifier_lib::api::EnrollFinishResponse, _> = host.client().post(
        "/v1/enroll/finish",
        &EnrollFinishRequest {
            enrollment_id: start.enrollment_id.clone(),
            secret: vec![7; 32],
        },
    );
    match r {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "activation_failed"),
        other => panic!("{other:?}"),
    }
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().hosts, 0);
    // The challenge is spent: even the right answer is refused now.
    let r: Result<verifier_lib::api::EnrollFinishResponse, _> = host.client().post(
        "/v1/enroll/finish",
        &EnrollFinishRequest {
            enrollment_id: start.enrollment_id,
            secret: vec![7; 32],
        },
    );
    assert!(
        matches!(r, Err(ClientError::Refused { code, .. }) if code == "enrollment_already_answered")
    );
}

#[test]
fn rsa_and_p384_eks_both_enroll() {
    // swtpm provisions an RSA-2048 EK and a P-384 EK (high-range template,
    // AES-256 symmetric): credential activation must work for both.
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    for alg in [EkAlg::Rsa2048, EkAlg::EccP384] {
        let host = Host::new(&broker.url());
        let mut tpm = host.tpm();
        let cert = tpm
            .ek_certificate(alg)
            .unwrap()
            .expect("swtpm provisions this EK");
        let ek = tpm.create_ek(alg).unwrap();
        let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
        let req = EnrollStartRequest {
            ek_cert: cert,
            ek_chain: Vec::new(),
            ek_public: ek.public_tpm2b.clone(),
            ak_public: ak.public_tpm2b.clone(),
        };
        let start: EnrollStartResponse = host.client().post("/v1/enroll/start", &req).unwrap();
        let secret = tpm
            .activate_credential(&ek, &ak, &start.id_object, &start.encrypted_secret)
            .unwrap();
        tpm.flush_ek(ek).unwrap();
        let done: verifier_lib::api::EnrollFinishResponse = host
            .client()
            .post(
                "/v1/enroll/finish",
                &EnrollFinishRequest {
                    enrollment_id: start.enrollment_id,
                    secret,
                },
            )
            .unwrap();
        assert_eq!(done.status, "enrolled", "{alg:?}");
    }
}

#[test]
fn workload_digest_not_allowed_is_denied() {
    let (pcrs, roots) = fresh_pcrs();
    let allowed = Workload::new("allowed");
    let other = Workload::new("other");
    let broker = broker_for(&pcrs, &[("hello", allowed.digest)], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let out = other.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("digest"), "{}", stderr(&out));
    assert!(!other.ran());
    // An unknown workload name is denied too.
    let out = allowed.run_on(&host, "nope");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("not allowed"), "{}", stderr(&out));
    assert!(!allowed.ran());
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().tokens, 0);
}

#[test]
fn expired_token_is_refused_by_the_gate() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("late");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    // The broker's clock runs an hour behind: every token it mints is already
    // expired for the host, whose clock is right.
    broker.clock.advance(-3600);
    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert!(!w.ran());
}

#[test]
fn token_from_an_unknown_key_is_refused() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("keys");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots.clone());
    let other = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let program = commands::resolve_program(w.path.to_str().unwrap()).unwrap();
    let (token, _) = commands::obtain_token(&host.settings, "hello", &program).unwrap();
    let other_keys = Host::new(&other.url()).client().key_set().unwrap();
    let e = TokenVerifier::new(other_keys, expectations("hello"))
        .verify(&token, now())
        .unwrap_err();
    assert!(matches!(e, TokenError::UnknownKey { .. }), "{e:?}");
}

/// Finding 8: the attester pins the broker's token keys at enrollment. A
/// second broker on the same database but with its own key (an impostor that
/// read the database, or a man in the middle serving its own key set next to
/// its own token) appraises and mints, but the host refuses its token; after
/// a genuine rotation the host follows the old key's endorsement.
#[test]
fn finding8_token_keys_are_pinned_at_enrollment() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("pinned");
    let opts = || swtpm_tests::broker::BrokerOptions {
        policy: swtpm_tests::broker::policy_toml("e2e-1", &pcrs, &[("hello", w.digest)]),
        ek_roots_pem: roots.clone(),
        bundled_manufacturers: false,
    };
    let broker = swtpm_tests::broker::TestBroker::start(opts()).unwrap();
    let mut host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let program = commands::resolve_program(w.path.to_str().unwrap()).unwrap();
    commands::obtain_token(&host.settings, "hello", &program).unwrap();

    // The impostor has the database and every key of the genuine broker
    // (its audit-log key included) except the token key.
    let db = broker.dir().join("writ.db");
    let impostor_dir = tempfile::tempdir().unwrap();
    let impostor_keys = impostor_dir.path().join("keys");
    std::fs::create_dir(&impostor_keys).unwrap();
    for f in std::fs::read_dir(broker.dir().join("keys")).unwrap() {
        let f = f.unwrap();
        if f.file_name() != writ_broker::keys::TOKEN_KEY_FILE {
            std::fs::copy(f.path(), impostor_keys.join(f.file_name())).unwrap();
        }
    }
    let impostor = swtpm_tests::broker::TestBroker::start_configured(impostor_dir, opts(), |cfg| {
        cfg.storage.url = format!("sqlite://{}", db.display());
    })
    .unwrap();
    let genuine_url = host.settings.broker.clone();
    host.settings.broker = impostor.url();
    let e = commands::obtain_token(&host.settings, "hello", &program).unwrap_err();
    assert!(
        matches!(
            &e,
            CommandError::Pinning(writ_attester::pinning::PinningError::Untrusted(
                TokenError::NoPinnedKey { .. }
            ))
        ),
        "{e:?}"
    );
    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!w.ran());
    drop(impostor);

    // A genuine rotation: the old key endorsed the new one, so the host
    // follows it and keeps getting tokens, now signed by the new key.
    host.settings.broker = genuine_url;
    let rotated = writ_broker::keys::rotate(
        &broker.dir().join("keys"),
        600,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
    .unwrap();
    let broker = broker
        .restart(std::time::Duration::ZERO, opts(), |_| {})
        .unwrap();
    writ_broker::keys::retire(&broker.dir().join("keys")).unwrap();
    let broker = broker
        .restart(std::time::Duration::ZERO, opts(), |_| {})
        .unwrap();
    let (_, verified) = commands::obtain_token(&host.settings, "hello", &program).unwrap();
    assert_eq!(verified.kid, rotated.new_kid);
    drop(broker);
}

#[test]
fn broker_unreachable_run_refuses() {
    let w = Workload::new("offline");
    let mut host = Host::new("http://127.0.0.1:1");
    host.settings.broker = "http://127.0.0.1:1".into();
    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3));
    assert!(!w.ran());
    // Not enrolled and no broker: either reason names the problem on one line.
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("writ-attester: refused to run")),
        "{err}"
    );
}

#[test]
fn broker_unreachable_after_enrollment_run_refuses() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("gone");
    let broker = broker_for(&pcrs, &[("hello", w.digest)], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    drop(broker);
    let out = w.run_on(&host, "hello");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    assert!(!w.ran());
}

fn expectations(aud: &str) -> Expectations {
    Expectations {
        issuer: "writ-broker".into(),
        audience: Audience::Exactly(aud.into()),
        leeway_secs: 30,
        max_lifetime_secs: 900,
        require_workload_digest: true,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .unwrap()
}

#[test]
fn malformed_and_oversized_bodies_get_4xx_and_change_nothing() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let host_id = host.state().host_id;
    let _outstanding = host.challenge();
    let before = broker.block_on(broker.store.counts()).unwrap();
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, ctype: &str, body: Vec<u8>| {
        // A broker refusing an oversized body answers 413 and closes the
        // connection while the client may still be sending: that transport
        // error is a race of the client, not an answer, so send again.
        let mut attempts = 0;
        let r = loop {
            match http
                .post(format!("{}{path}", broker.url()))
                .header("content-type", ctype)
                .body(body.clone())
                .send()
            {
                Ok(r) => break r,
                Err(e) if attempts < 5 && (e.is_request() || e.is_connect()) => attempts += 1,
                Err(e) => panic!("{path}: {e}"),
            }
        };
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap_or(serde_json::Value::Null);
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };
    let json = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("/v1/attest", json, b"{not json".to_vec(), 400, "malformed_json"),
        ("/v1/attest", json, br#"{"host_id":"x","nonce":"!!!","evidence":{}}"#.to_vec(), 400, "invalid_body"),
        (
            "/v1/attest",
            json,
            format!(r#"{{"host_id":"{host_id}","nonce":"AAAA","evidence":{{"attest":"AAAA","signature":"AAAA","pcrs":{{}}}},"extra":1}}"#).into_bytes(),
            400,
            "invalid_body",
        ),
        ("/v1/challenge", "text/plain", br#"{"host_id":"x"}"#.to_vec(), 415, "unsupported_media_type"),
        ("/v1/enroll/start", json, vec![b' '; 2 * 1024 * 1024], 413, "body_too_large"),
        (
            "/v1/enroll/start",
            json,
            br#"{"ek_cert":"AAAA","ek_public":"AAAA","ak_public":"AAAA"}"#.to_vec(),
            400,
            "invalid_ek_public",
        ),
        ("/v1/enroll/finish", json, br#"{"enrollment_id":"nope","secret":"AAAA"}"#.to_vec(), 404, "unknown_enrollment"),
        ("/v1/nothing", json, b"{}".to_vec(), 404, "not_found"),
    ];
    for (path, ctype, body, status, code) in cases {
        assert_eq!(
            post(path, ctype, body),
            (status, code.to_owned()),
            "{path} {code}"
        );
    }
    // A well-formed attest whose quote is garbage: refused as evidence, and the nonce is unknown.
    let garbage = format!(
        r#"{{"host_id":"{host_id}","nonce":"AAAA","evidence":{{"attest":"AAAA","signature":"AAAA","pcrs":{{}}}}}}"#
    );
    assert_eq!(
        post("/v1/attest", json, garbage.into_bytes()),
        (403, "nonce_unknown".to_owned())
    );
    assert_eq!(broker.block_on(broker.store.counts()).unwrap(), before);
}
