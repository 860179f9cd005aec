//! Shared fixtures for the `token_*` integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use ciborium::value::Value;
use coset::{iana, CoseSign1Builder, Header, HeaderBuilder, TaggedCborSerializable};
use verifier_lib::token::*;

/// The fixed "now" every token test verifies at (2026-01-01T00:00:00Z).
pub const NOW: i64 = 1_767_225_600;
pub const ISSUER: &str = "https://broker.writ.test";
pub const AUDIENCE: &str = "workload:payments-api";

/// A claims set with every optional claim populated.
pub fn full_claims(signer_of_cnf: &SigningKey) -> Claims {
    let mut tpm = SubmodClaims::new();
    tpm.insert("pcr-digest".into(), ClaimValue::Bytes(vec![0xab; 32]));
    tpm.insert(
        "firmware".into(),
        ClaimValue::Text("edk2-stable202411".into()),
    );
    tpm.insert("reset-count".into(), ClaimValue::Int(-7));
    tpm.insert("secure-boot".into(), ClaimValue::Bool(true));
    let mut cpu = SubmodClaims::new();
    cpu.insert("measurement".into(), ClaimValue::Bytes(vec![0x11; 48]));
    cpu.insert("tcb".into(), ClaimValue::Int(0x1500_0000_0000_0004));
    cpu.insert("chip-id".into(), ClaimValue::Bytes(vec![0x22; 64]));
    let mut submods = BTreeMap::new();
    submods.insert("tpm".to_string(), tpm);
    submods.insert("cpu".to_string(), cpu);
    Claims {
        iss: ISSUER.into(),
        sub: "host:node-17".into(),
        aud: AUDIENCE.into(),
        exp: NOW + 300,
        nbf: NOW - 5,
        iat: NOW - 5,
        cti: (1..=16).collect(),
        eat_nonce: Some(vec![0x5a; 32]),
        eat_profile: PROFILE.into(),
        appraisal: Appraisal {
            status: EarStatus::Affirming,
            trust_vector: TrustVector {
                instance_identity: Some(2),
                configuration: Some(2),
                executables: Some(32),
                file_system: Some(-1),
                hardware: Some(2),
                runtime_opaque: Some(96),
                storage_opaque: Some(0),
                sourced_data: Some(127),
            },
            policy_id: "policy:default@3".into(),
            verifier_id: "writ-broker/0.1.0".into(),
            submods,
        },
        workload_digest: Some(vec![0xcd; 32]),
        cnf: Some(signer_of_cnf.verifying_key()),
        lineage: Some(Lineage {
            parent_cti: vec![0x77; 16],
            parent_digest: vec![0x88; 32],
            depth: 2,
        }),
        scope: vec!["read:secrets/db".into(), "net:egress".into()],
        audit_index: Some(u64::MAX),
        offline_ok: true,
        status: None,
    }
}

/// A claims set with only the required claims.
pub fn minimal_claims() -> Claims {
    Claims {
        iss: ISSUER.into(),
        sub: "host:node-17".into(),
        aud: AUDIENCE.into(),
        exp: NOW + 300,
        nbf: NOW,
        iat: NOW,
        cti: vec![9; 16],
        eat_nonce: None,
        eat_profile: PROFILE.into(),
        appraisal: Appraisal {
            status: EarStatus::Warning,
            trust_vector: TrustVector::default(),
            policy_id: "p".into(),
            verifier_id: "writ-broker/0.1.0".into(),
            submods: BTreeMap::new(),
        },
        workload_digest: None,
        cnf: None,
        lineage: None,
        scope: vec![],
        audit_index: None,
        offline_ok: false,
        status: None,
    }
}

pub fn expectations() -> Expectations {
    Expectations {
        issuer: ISSUER.into(),
        audience: Audience::Exactly(AUDIENCE.into()),
        leeway_secs: 30,
        max_lifetime_secs: 3600,
        require_workload_digest: false,
    }
}

pub fn verifier_for(key: &SigningKey) -> TokenVerifier {
    TokenVerifier::new(
        KeySet::new(vec![key.verifying_key()]).unwrap(),
        expectations(),
    )
}

/// The protected header Writ itself writes.
pub fn writ_protected(key: &SigningKey) -> Header {
    HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(key.kid().into_bytes())
        .build()
}

/// A tagged COSE_Sign1 with arbitrary headers and payload, correctly signed
/// by `key` (ES256 over the Sig_structure), so only the forged aspect can fail.
pub fn forge(
    protected: Header,
    unprotected: Header,
    payload: Vec<u8>,
    key: &SigningKey,
) -> Vec<u8> {
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload)
        .create_signature(b"", |tbs| key.sign(tbs).unwrap())
        .build()
        .to_tagged_vec()
        .unwrap()
}

/// Sign `payload` exactly as Writ would, whatever the payload is.
pub fn sign_payload(payload: Vec<u8>, key: &SigningKey) -> Vec<u8> {
    forge(writ_protected(key), Header::default(), payload, key)
}

/// Decode the CBOR claims map of `claims`, let `f` edit its entries, re-encode.
pub fn edited_payload(claims: &Claims, f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let bytes = claims.to_cbor_bytes().unwrap();
    let Value::Map(mut entries) = ciborium::de::from_reader::<Value, _>(bytes.as_slice()).unwrap()
    else {
        panic!("claims set is not a map")
    };
    f(&mut entries);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&Value::Map(entries), &mut out).unwrap();
    out
}

pub fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

/// Replace (or insert) the value under integer key `key`.
pub fn set(entries: &mut Vec<(Value, Value)>, key: i64, value: Value) {
    entries.retain(|(k, _)| *k != int(key));
    entries.push((int(key), value));
}

/// The payload bytes inside a minted token.
pub fn payload_of(token: &[u8]) -> Vec<u8> {
    coset::CoseSign1::from_tagged_slice(token)
        .unwrap()
        .payload
        .unwrap()
}
