//! Finding 1 of the security review, end to end on swtpm: one TPM is one
//! host. The host id derives from the EK key itself, an EK public area that
//! is not a TCG default template is refused, and a revoked TPM cannot come
//! back under another encoding of its EK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{broker_for, fresh_pcrs, Host};
use verifier_lib::api::EnrollStartResponse;
use verifier_lib::api::{EnrollFinishRequest, EnrollFinishResponse, EnrollStartRequest};
use verifier_lib::ekcert::EkIdentity;
use verifier_lib::tpm::Public;
use writ_attester::client::ClientError;
use writ_attester::commands;
use writ_attester::tpm::{AkAlg, EkAlg};

/// In a `TPM2B_PUBLIC` of template L-1: the first authPolicy byte (size
/// prefix, type, nameAlg, objectAttributes, authPolicy size) ...
const AUTH_POLICY_AT: usize = 2 + 2 + 2 + 4 + 2;
/// ... and the RSA exponent (after authPolicy, symmetric, scheme, keyBits).
const EXPONENT_AT: usize = AUTH_POLICY_AT + 32 + 6 + 2 + 2;

/// Enroll `host`'s RSA 2048 EK by hand, with its EK public area rewritten by
/// `edit`: the start answer, or the broker's refusal code.
fn enroll_edited(
    host: &Host,
    edit: impl FnOnce(&mut [u8]),
) -> Result<EnrollFinishResponse, String> {
    let mut tpm = host.tpm();
    let cert = tpm.ek_certificate(EkAlg::Rsa2048).unwrap().unwrap();
    let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
    let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
    let mut ek_public = ek.public_tpm2b.clone();
    edit(&mut ek_public);
    let req = EnrollStartRequest {
        ek_cert: cert,
        ek_chain: Vec::new(),
        ek_public,
        ak_public: ak.public_tpm2b.clone(),
    };
    let refused = |e: ClientError| match e {
        ClientError::Refused { code, .. } => code,
        other => panic!("expected a broker refusal, got {other:?}"),
    };
    let start: Result<EnrollStartResponse, _> = host.client().post("/v1/enroll/start", &req);
    let start = match start {
        Ok(s) => s,
        Err(e) => {
            tpm.flush_ek(ek).unwrap();
            return Err(refused(e));
        }
    };
    let secret = tpm
        .activate_credential(&ek, &ak, &start.id_object, &start.encrypted_secret)
        .unwrap();
    tpm.flush_ek(ek).unwrap();
    let done: EnrollFinishResponse = host
        .client()
        .post(
            "/v1/enroll/finish",
            &EnrollFinishRequest {
                enrollment_id: start.enrollment_id,
                secret,
            },
        )
        .map_err(refused)?;
    assert_eq!(done.host_id, start.host_id);
    Ok(done)
}

fn revoke(url: &str, host_id: &str) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/hosts/{host_id}/revoke"))
        .header(
            "authorization",
            format!("Bearer {}", swtpm_tests::broker::OPERATOR_TOKEN),
        )
        .header("content-type", "application/json")
        .body(r#"{"reason":"finding 1 test"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

fn flip_auth_policy(p: &mut [u8]) {
    p[AUTH_POLICY_AT] ^= 0x01;
}

fn exponent_65537(p: &mut [u8]) {
    assert_eq!(
        p[EXPONENT_AT..EXPONENT_AT + 4],
        [0, 0, 0, 0],
        "L-1 writes exponent 0"
    );
    p[EXPONENT_AT..EXPONENT_AT + 4].copy_from_slice(&65537u32.to_be_bytes());
}

#[test]
fn finding1_revoked_tpm_cannot_reenroll_under_another_ek_encoding() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::distinct(&broker.url());

    // The normal enrollment: the host id is the EK key's identity.
    let done = commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let ek_public = {
        let mut tpm = host.tpm();
        let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
        let p = ek.public_tpm2b.clone();
        tpm.flush_ek(ek).unwrap();
        p
    };
    let key = Public::parse(&ek_public).unwrap().key;
    assert_eq!(done.host_id, EkIdentity::of_key(&key).host_id());

    // The same TPM with its exponent written as 65537 is the same host.
    let again = enroll_edited(&host, exponent_65537).unwrap();
    assert_eq!(again.host_id, done.host_id);
    // A flipped authPolicy byte is not a default EK template.
    assert_eq!(
        enroll_edited(&host, flip_auth_policy).unwrap_err(),
        "ek_template_mismatch"
    );
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().hosts, 1);

    revoke(&broker.url(), &done.host_id);

    // (a) authPolicy flipped: refused as a template deviation.
    assert_eq!(
        enroll_edited(&host, flip_auth_policy).unwrap_err(),
        "ek_template_mismatch"
    );
    // (b) exponent written as 65537: the same key, revoked.
    assert_eq!(
        enroll_edited(&host, exponent_65537).unwrap_err(),
        "host_revoked"
    );
    // The original encoding: revoked too.
    assert_eq!(enroll_edited(&host, |_| {}).unwrap_err(), "host_revoked");
    let e = commands::enroll(&host.settings, AkAlg::Rsa2048).unwrap_err();
    assert!(format!("{e:?}").contains("host_revoked"), "{e:?}");
    // Still one host, revoked, and no enrollment was stored for the refusals.
    let hosts = broker.block_on(broker.store.hosts()).unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].status.as_str(), "revoked");
}

#[test]
fn finding1_revocation_between_start_and_finish_refuses_the_finish() {
    let (pcrs, roots) = fresh_pcrs();
    let broker = broker_for(&pcrs, &[], roots);
    let host = Host::distinct(&broker.url());
    let done = commands::enroll(&host.settings, AkAlg::EccP256).unwrap();

    // Start a re-enrollment (another encoding of the EK), revoke, finish.
    let mut tpm = host.tpm();
    let cert = tpm.ek_certificate(EkAlg::Rsa2048).unwrap().unwrap();
    let ek = tpm.create_ek(EkAlg::Rsa2048).unwrap();
    let ak = tpm.create_ak(&ek, AkAlg::EccP256).unwrap();
    let mut ek_public = ek.public_tpm2b.clone();
    exponent_65537(&mut ek_public);
    let start: EnrollStartResponse = host
        .client()
        .post(
            "/v1/enroll/start",
            &EnrollStartRequest {
                ek_cert: cert,
                ek_chain: Vec::new(),
                ek_public,
                ak_public: ak.public_tpm2b.clone(),
            },
        )
        .unwrap();
    assert_eq!(start.host_id, done.host_id);
    revoke(&broker.url(), &done.host_id);
    let secret = tpm
        .activate_credential(&ek, &ak, &start.id_object, &start.encrypted_secret)
        .unwrap();
    tpm.flush_ek(ek).unwrap();
    let r: Result<EnrollFinishResponse, _> = host.client().post(
        "/v1/enroll/finish",
        &EnrollFinishRequest {
            enrollment_id: start.enrollment_id,
            secret,
        },
    );
    match r {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "host_revoked"),
        other => panic!("{other:?}"),
    }
}
