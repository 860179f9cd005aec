//! Request-signing keys end to end on swtpm: the AK certifies a NULL-
//! hierarchy signing key (TPM2_Certify), the broker registers it, and token
//! requests signed with it get tokens without a quote — only while the host
//! is trusted with a fresh passing appraisal, in the boot the key was
//! certified in, with a valid signature over a fresh nonce. Every refusal
//! is typed and yields no token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{fresh_pcrs, Host, Workload};
use swtpm_tests::broker::{policy_toml, BrokerOptions, TestBroker};
use verifier_lib::api::request_key::{
    RequestKeyRegistration, RequestKeyResponse, SignedTokenRequest,
};
use verifier_lib::api::{ChallengeResponse, TokenResponse};
use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::token::ClaimValue;
use writ_attester::client::ClientError;
use writ_attester::commands::{self, CommandError};
use writ_attester::request_key;
use writ_attester::tpm::AkAlg;

fn broker(
    pcrs: &std::collections::BTreeMap<u8, Vec<u8>>,
    w: &Workload,
    roots: Vec<u8>,
) -> TestBroker {
    TestBroker::start_configured(
        tempfile::tempdir().unwrap(),
        BrokerOptions {
            policy: policy_toml("rk-1", pcrs, &[("hello", w.digest)]),
            ek_roots_pem: roots,
            bundled_manufacturers: false,
        },
        |_| {},
    )
    .unwrap()
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn command_code(r: Result<impl std::fmt::Debug, CommandError>) -> String {
    match r {
        Err(CommandError::Broker(ClientError::Refused { code, .. })) => code,
        other => panic!("expected a broker refusal, got {other:?}"),
    }
}

fn trusted(broker: &TestBroker) -> Host {
    let host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    assert_eq!(
        commands::attest(&host.settings).unwrap().host_status,
        "trusted"
    );
    host
}

fn secret(host: &Host) -> Vec<u8> {
    hex::decode(host.state().request_key_secret.unwrap()).unwrap()
}

/// A signed request built by hand (to replay or alter it).
fn signed_request(
    host: &Host,
    secret: &[u8],
    ch: &ChallengeResponse,
    digest: &[u8; 32],
) -> SignedTokenRequest {
    let host_id = host.state().host_id;
    let binding = TokenRequestBinding {
        host_id: &host_id,
        workload: "hello",
        workload_digest: digest,
        cnf_key: None,
    };
    let signed = host
        .tpm()
        .sign_request(secret, &binding.quote_nonce(&ch.nonce))
        .unwrap();
    SignedTokenRequest {
        host_id,
        workload: "hello".into(),
        workload_digest: digest.to_vec(),
        cnf: None,
        nonce: ch.nonce.clone(),
        key_name: signed.key_name,
        signature: signed.signature,
    }
}

#[test]
fn signed_requests_get_tokens_without_a_quote() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("rk");
    let broker = broker(&pcrs, &w, roots);
    let host = trusted(&broker);
    let reg: RequestKeyResponse = request_key::register(&host.settings).unwrap();
    assert_eq!(reg.host_id, host.state().host_id);
    assert_eq!(reg.max_appraisal_age_secs, 120);
    let appraisals = broker.block_on(broker.store.counts()).unwrap().appraisals;

    let key = writ_broker_key();
    let cnf = key.verifying_key().to_cose_key_bytes().unwrap();
    let (_, v) =
        request_key::obtain_token_signed(&host.settings, "hello", &w.digest, Some(&cnf)).unwrap();
    let tpm = &v.claims.appraisal.submods["tpm"];
    assert_eq!(tpm["evidence"], ClaimValue::Text("request-key".into()));
    assert_eq!(tpm["request-key"], ClaimValue::Bytes(reg.key_name.clone()));
    assert_eq!(v.claims.cnf.as_ref().unwrap().kid, key.kid());
    // No quote was appraised for it.
    assert_eq!(
        broker.block_on(broker.store.counts()).unwrap().appraisals,
        appraisals
    );
    // The key's certification and the token are in the audit log, the
    // token at its own audit_index.
    let rows = broker
        .block_on(broker.store.audit_leaves(0, 1 << 20))
        .unwrap();
    let decisions: Vec<(u64, Decision)> = rows
        .iter()
        .map(|r| (r.index, Leaf::decode(&r.leaf).unwrap().decision))
        .collect();
    assert!(decisions.iter().any(|(_, d)| matches!(d,
        Decision::RequestKeyCertified { key_name, .. } if *key_name == reg.key_name)));
    let (index, minted) = decisions.last().unwrap();
    assert!(
        matches!(minted, Decision::TokenMinted { cti, .. } if *cti == hex::encode(&v.claims.cti))
    );
    assert_eq!(v.claims.audit_index, Some(*index));

    // Not for a workload digest the policy does not allow.
    assert_eq!(
        command_code(request_key::obtain_token_signed(
            &host.settings,
            "hello",
            &[7; 32],
            None
        )),
        "denied"
    );
}

fn writ_broker_key() -> verifier_lib::token::SigningKey {
    verifier_lib::token::SigningKey::generate().unwrap()
}

#[test]
fn forged_replayed_or_foreign_signatures_are_refused() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("rk-forge");
    let broker = broker(&pcrs, &w, roots);
    let host = trusted(&broker);
    request_key::register(&host.settings).unwrap();
    let secret = secret(&host);
    let client = host.client();
    let post = |r: &SignedTokenRequest| client.post::<_, TokenResponse>("/v1/tokens/signed", r);

    // A good request works once; its replay is refused.
    let good = signed_request(&host, &secret, &host.challenge(), &w.digest);
    post(&good).unwrap();
    assert_eq!(code(post(&good)), "nonce_reused");

    // Signed for another workload digest than it asks for.
    let mut other = signed_request(&host, &secret, &host.challenge(), &w.digest);
    other.workload_digest = vec![9; 32];
    assert_eq!(code(post(&other)), "request_signature_invalid");

    // A key derived from another secret: unknown by name, and invalid
    // when it claims the registered key's name.
    let foreign = signed_request(&host, &[0x42; 32], &host.challenge(), &w.digest);
    assert_eq!(code(post(&foreign)), "request_key_unknown");
    let mut claimed = signed_request(&host, &[0x42; 32], &host.challenge(), &w.digest);
    claimed.key_name = good.key_name.clone();
    assert_eq!(code(post(&claimed)), "request_signature_invalid");

    // The AK's certification must be of this key, over this nonce, of the
    // right kind of key.
    let state = host.state();
    let register = |ch: &ChallengeResponse, f: &dyn Fn(&mut RequestKeyRegistration)| {
        let mut tpm = host.tpm();
        let ek = tpm.create_ek(state.ek_alg).unwrap();
        let c = tpm
            .certify_request_key(&ek, &state.ak, &secret, &ch.nonce)
            .unwrap();
        tpm.flush_ek(ek).unwrap();
        let mut reg = RequestKeyRegistration {
            host_id: state.host_id.clone(),
            nonce: ch.nonce.clone(),
            key_public: c.key_public,
            attest: c.attest,
            signature: c.signature,
        };
        f(&mut reg);
        client.post::<_, RequestKeyResponse>("/v1/request-keys", &reg)
    };
    // Over another nonce than the one presented.
    let ch1 = host.challenge();
    let ch2 = host.challenge();
    let moved = register(&ch1, &|r| r.nonce = ch2.nonce.clone());
    assert_eq!(code(moved), "request_key_rejected");
    // Attributes changed (decrypt set): refused by the attribute check,
    // before the certified name (which no longer matches) is compared.
    let decrypt = register(&host.challenge(), &|r| {
        // TPM2B size (2), type (2), nameAlg (2), then objectAttributes
        // big-endian: decrypt is bit 17, in its second byte.
        r.key_public[7] |= 0x02;
    });
    match decrypt {
        Err(ClientError::Refused { code, message, .. }) => {
            assert_eq!(code, "request_key_rejected");
            assert!(message.contains("decrypt"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A quote is not a certification.
    let ch = host.challenge();
    let q = host.quote(&ch, &ch.nonce, None);
    let quote_as_cert = register(&ch, &|r| {
        r.attest = q.attest.clone();
        r.signature = q.signature.clone();
    });
    assert_eq!(code(quote_as_cert), "request_key_rejected");
    // None of that produced a token.
    assert_eq!(broker.block_on(broker.store.counts()).unwrap().tokens, 1);
}

#[test]
fn signed_requests_need_a_fresh_trusted_host_in_the_certified_boot() {
    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("rk-fresh");
    let broker = broker(&pcrs, &w, roots);

    // Enrolled but never appraised: no key.
    let fresh = Host::new(&broker.url());
    commands::enroll(&fresh.settings, AkAlg::EccP256).unwrap();
    assert_eq!(
        command_code(request_key::register(&fresh.settings)),
        "host_not_fresh"
    );

    let mut host = trusted(&broker);
    request_key::register(&host.settings).unwrap();
    let signed = |h: &Host| request_key::obtain_token_signed(&h.settings, "hello", &w.digest, None);
    signed(&host).unwrap();

    // The last appraisal ages past hosts.signed_request_max_age_secs.
    broker.clock.advance(121);
    assert_eq!(command_code(signed(&host)), "host_not_fresh");
    commands::attest(&host.settings).unwrap();
    // Back to real time, so the client accepts the tokens' nbf; the new
    // appraisal (121 s ahead) is fresh.
    broker.clock.advance(-121);
    signed(&host).unwrap();

    // A failed host: refused.
    host.extend_pcr16();
    assert_eq!(
        commands::attest(&host.settings).unwrap().host_status,
        "failed"
    );
    assert_eq!(command_code(signed(&host)), "host_not_fresh");

    // A reboot destroys the key (NULL hierarchy) ...
    let mut host2 = Host::distinct(&broker.url());
    commands::enroll(&host2.settings, AkAlg::EccP256).unwrap();
    commands::attest(&host2.settings).unwrap();
    request_key::register(&host2.settings).unwrap();
    signed(&host2).unwrap();
    host2.swtpm.restart().unwrap();
    assert_eq!(command_code(signed(&host2)), "request_key_unknown");
    // ... and the new one is accepted only once a quote showed the new boot.
    assert_eq!(
        command_code(request_key::register(&host2.settings)),
        "request_key_other_boot"
    );
    commands::attest(&host2.settings).unwrap();
    request_key::register(&host2.settings).unwrap();
    signed(&host2).unwrap();

    // Re-enrollment (a new AK) voids the registration.
    host.swtpm.restart().unwrap();
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    assert!(broker
        .block_on(broker.store.request_key(&host.state().host_id))
        .unwrap()
        .is_none());
}

/// The daemon certifies its request key after a passing attestation and
/// answers token requests with it (no quote); when the broker refuses the
/// signed request (here after a reboot) it falls back to a quote, and certifies
/// again after the next passing attestation.
#[test]
fn the_daemon_signs_token_requests_between_attestations() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use writ_attester::daemon::{Daemon, DaemonConfig};

    let (pcrs, roots) = fresh_pcrs();
    let w = Workload::new("rk-daemon");
    let broker = broker(&pcrs, &w, roots);
    let mut host = Host::new(&broker.url());
    commands::enroll(&host.settings, AkAlg::EccP256).unwrap();
    let d = Daemon::new(
        host.settings.clone(),
        DaemonConfig::default(),
        Arc::new(AtomicBool::new(false)),
    );
    assert_eq!(d.attest_once().unwrap().verdict, "affirming");
    let id = host.state().host_id;
    assert!(broker
        .block_on(broker.store.request_key(&id))
        .unwrap()
        .is_some());
    let appraisals = || broker.block_on(broker.store.counts()).unwrap().appraisals;
    let keys = host.client().key_set().unwrap();
    let evidence = |t: &[u8]| {
        let keys = keys.clone();
        let v = verifier_lib::token::TokenVerifier::new(
            keys,
            verifier_lib::token::Expectations::new("writ-broker", "hello"),
        )
        .verify(t, time::OffsetDateTime::now_utc().unix_timestamp())
        .unwrap();
        match v.claims.appraisal.submods["tpm"].get("evidence") {
            Some(ClaimValue::Text(e)) => e.clone(),
            _ => "quote".to_owned(),
        }
    };
    let cnf = || {
        writ_broker_key()
            .verifying_key()
            .to_cose_key_bytes()
            .unwrap()
    };

    let before = appraisals();
    let t = d.token_for("hello", &w.digest, Some(&cnf())).unwrap();
    assert_eq!(evidence(&t.token), "request-key");
    assert_eq!(appraisals(), before);

    // A reboot voids the key: the signed request is refused and the daemon
    // falls back to a quote (which shows the broker the new boot).
    host.swtpm.restart().unwrap();
    let t = d.token_for("hello", &w.digest, Some(&cnf())).unwrap();
    assert_eq!(evidence(&t.token), "quote");
    assert_eq!(appraisals(), before + 1);
    // Registration is renewed by the next passing attestation.
    d.attest_once().unwrap();
    let t = d.token_for("hello", &w.digest, Some(&cnf())).unwrap();
    assert_eq!(evidence(&t.token), "request-key");
}
