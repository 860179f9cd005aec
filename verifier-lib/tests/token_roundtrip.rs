//! Minting and verifying Writ tokens: round trips, deterministic payloads and
//! the EAR/CWT shape of the claims set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod token_common;

use ciborium::value::Value;
use coset::TaggedCborSerializable;
use sha2::{Digest, Sha256};
use token_common::*;
use verifier_lib::token::*;

fn decode(bytes: &[u8]) -> Value {
    ciborium::de::from_reader(bytes).unwrap()
}

fn map_get<'a>(v: &'a Value, key: &Value) -> Option<&'a Value> {
    match v {
        Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

#[test]
fn round_trip_with_every_optional_claim() {
    let broker = SigningKey::generate().unwrap();
    let workload = SigningKey::generate().unwrap();
    let claims = full_claims(&workload);
    let token = mint(&claims, &broker).unwrap();
    let verified = verifier_for(&broker).verify(&token, NOW).unwrap();
    assert_eq!(verified.claims, claims);
    assert_eq!(verified.kid, broker.kid());
    assert_eq!(verified.digest, Sha256::digest(&token).to_vec());
    assert_eq!(verified.claims.cnf.unwrap().kid, workload.kid());
}

#[test]
fn round_trip_with_only_required_claims() {
    let broker = SigningKey::generate().unwrap();
    let claims = minimal_claims();
    let token = mint(&claims, &broker).unwrap();
    let verified = verifier_for(&broker).verify(&token, NOW).unwrap();
    assert_eq!(verified.claims, claims);
    let (kid, decoded) = decode_unverified(&token).unwrap();
    assert_eq!(kid, broker.kid());
    assert_eq!(decoded, claims);
}

#[test]
fn every_status_tier_round_trips_with_its_ear_code_point() {
    let broker = SigningKey::generate().unwrap();
    for (status, code) in [
        (EarStatus::None, 0),
        (EarStatus::Affirming, 2),
        (EarStatus::Warning, 32),
        (EarStatus::Contraindicated, 96),
    ] {
        assert_eq!(status.tier(), code);
        assert_eq!(EarStatus::from_tier(code), Some(status));
        let mut claims = minimal_claims();
        claims.appraisal.status = status;
        let token = mint(&claims, &broker).unwrap();
        let payload = decode(&payload_of(&token));
        assert_eq!(map_get(&payload, &int(1000)), Some(&int(code)));
        let verified = verifier_for(&broker).verify(&token, NOW).unwrap();
        assert_eq!(verified.claims.appraisal.status, status);
    }
    for code in [1, 3, 31, 33, 95, 97, -2] {
        assert_eq!(EarStatus::from_tier(code), None);
    }
}

#[test]
fn payload_is_deterministic() {
    let broker = SigningKey::generate().unwrap();
    let workload = SigningKey::generate().unwrap();
    let claims = full_claims(&workload);
    let a = mint(&claims, &broker).unwrap();
    let b = mint(&claims, &broker).unwrap();
    assert_eq!(payload_of(&a), payload_of(&b));
    assert_eq!(payload_of(&a), claims.to_cbor_bytes().unwrap());
    // Same claims built in a different order of insertion still encode identically.
    let mut reordered = claims.clone();
    let mut submods = std::collections::BTreeMap::new();
    for (k, v) in claims.appraisal.submods.iter().rev() {
        submods.insert(k.clone(), v.clone());
    }
    reordered.appraisal.submods = submods;
    assert_eq!(
        reordered.to_cbor_bytes().unwrap(),
        claims.to_cbor_bytes().unwrap()
    );
    // Protected headers are identical too; only the signatures may differ.
    let pa = coset::CoseSign1::from_tagged_slice(&a).unwrap();
    let pb = coset::CoseSign1::from_tagged_slice(&b).unwrap();
    assert_eq!(pa.protected.original_data, pb.protected.original_data);
}

/// RFC 8949 §4.2.1: every map's keys are in strictly increasing bytewise
/// order of their encodings, all lengths definite, integers shortest.
fn assert_core_deterministic(v: &Value) {
    match v {
        Value::Map(m) => {
            let keys: Vec<Vec<u8>> = m
                .iter()
                .map(|(k, _)| {
                    let mut b = Vec::new();
                    ciborium::ser::into_writer(k, &mut b).unwrap();
                    b
                })
                .collect();
            for w in keys.windows(2) {
                assert!(
                    w[0] < w[1],
                    "map keys out of order: {:02x?} !< {:02x?}",
                    w[0],
                    w[1]
                );
            }
            for (k, v) in m {
                assert_core_deterministic(k);
                assert_core_deterministic(v);
            }
        }
        Value::Array(a) => a.iter().for_each(assert_core_deterministic),
        Value::Tag(_, inner) => assert_core_deterministic(inner),
        _ => {}
    }
}

#[test]
fn payload_encoding_is_core_deterministic() {
    let workload = SigningKey::generate().unwrap();
    for claims in [full_claims(&workload), minimal_claims()] {
        let bytes = claims.to_cbor_bytes().unwrap();
        let value = decode(&bytes);
        assert_core_deterministic(&value);
        // Re-encoding the decoded value reproduces the bytes: definite
        // lengths and shortest-form heads throughout.
        let mut again = Vec::new();
        ciborium::ser::into_writer(&value, &mut again).unwrap();
        assert_eq!(again, bytes);
    }
}

#[test]
fn claims_set_has_the_cwt_eat_ear_shape() {
    let workload = SigningKey::generate().unwrap();
    let claims = full_claims(&workload);
    let v = decode(&claims.to_cbor_bytes().unwrap());
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(map_get(&v, &int(1)), Some(&text(ISSUER)));
    assert_eq!(map_get(&v, &int(2)), Some(&text("host:node-17")));
    assert_eq!(map_get(&v, &int(3)), Some(&text(AUDIENCE)));
    assert_eq!(map_get(&v, &int(4)), Some(&int(NOW + 300)));
    assert_eq!(
        map_get(&v, &int(7)),
        Some(&Value::Bytes((1..=16).collect()))
    );
    assert_eq!(map_get(&v, &int(10)), Some(&Value::Bytes(vec![0x5a; 32])));
    assert_eq!(map_get(&v, &int(265)), Some(&text(PROFILE)));
    // ear.trustworthiness-vector: AR4SI claim keys 0..=7.
    let tv = map_get(&v, &int(1001)).unwrap();
    for (k, want) in [
        (0, 2),
        (1, 2),
        (2, 32),
        (3, -1),
        (4, 2),
        (5, 96),
        (6, 0),
        (7, 127),
    ] {
        assert_eq!(map_get(tv, &int(k)), Some(&int(want)), "tv key {k}");
    }
    assert_eq!(map_get(&v, &int(1003)), Some(&text("policy:default@3")));
    let vid = map_get(&v, &int(1004)).unwrap();
    assert_eq!(map_get(vid, &int(0)), Some(&text(VERIFIER_DEVELOPER)));
    assert_eq!(map_get(vid, &int(1)), Some(&text("writ-broker/0.1.0")));
    // submods: text → { text → value }.
    let cpu = map_get(map_get(&v, &int(266)).unwrap(), &text("cpu")).unwrap();
    assert_eq!(
        map_get(cpu, &text("measurement")),
        Some(&Value::Bytes(vec![0x11; 48]))
    );
    // cnf: {1: COSE_Key} with an EC2 P-256 key.
    let key = map_get(map_get(&v, &int(8)).unwrap(), &int(1)).unwrap();
    let vk = workload.verifying_key();
    assert_eq!(map_get(key, &int(1)), Some(&int(2)));
    assert_eq!(map_get(key, &int(-1)), Some(&int(1)));
    assert_eq!(map_get(key, &int(-2)), Some(&Value::Bytes(vk.x().to_vec())));
    assert_eq!(map_get(key, &int(-3)), Some(&Value::Bytes(vk.y().to_vec())));
    // Writ-private claims in the CWT private-use range.
    assert_eq!(
        map_get(&v, &int(-65537)),
        Some(&Value::Bytes(vec![0xcd; 32]))
    );
    let lineage = map_get(&v, &int(-65538)).unwrap();
    assert_eq!(
        map_get(lineage, &int(1)),
        Some(&Value::Bytes(vec![0x77; 16]))
    );
    assert_eq!(
        map_get(lineage, &int(2)),
        Some(&Value::Bytes(vec![0x88; 32]))
    );
    assert_eq!(map_get(lineage, &int(3)), Some(&int(2)));
    assert_eq!(
        map_get(&v, &int(-65539)),
        Some(&Value::Integer(u64::MAX.into()))
    );
    assert_eq!(
        map_get(&v, &int(-65540)),
        Some(&Value::Array(vec![
            text("read:secrets/db"),
            text("net:egress")
        ]))
    );
}

#[test]
fn protected_header_is_es256_and_kid_only() {
    let broker = SigningKey::generate().unwrap();
    let token = mint(&minimal_claims(), &broker).unwrap();
    let sign1 = coset::CoseSign1::from_tagged_slice(&token).unwrap();
    let protected = decode(sign1.protected.original_data.as_ref().unwrap());
    assert_eq!(
        protected,
        Value::Map(vec![
            (int(1), int(-7)),
            (int(4), Value::Bytes(broker.kid().into_bytes())),
        ])
    );
    assert!(sign1.unprotected.is_empty());
    assert_eq!(sign1.signature.len(), 64);
    assert_eq!(token.first(), Some(&0xd2), "tag 18 prefix");
}

#[test]
fn cwt_tag_61_around_the_cose_tag_is_accepted() {
    let broker = SigningKey::generate().unwrap();
    let claims = minimal_claims();
    let token = mint(&claims, &broker).unwrap();
    let mut wrapped = vec![0xd8, 61];
    wrapped.extend_from_slice(&token);
    let verified = verifier_for(&broker).verify(&wrapped, NOW).unwrap();
    assert_eq!(verified.claims, claims);
    assert_eq!(verified.digest, Sha256::digest(&wrapped).to_vec());
}

#[test]
fn claims_serialize_to_json_and_back() {
    let workload = SigningKey::generate().unwrap();
    let claims = full_claims(&workload);
    let json = serde_json::to_value(&claims).unwrap();
    assert_eq!(json["appraisal"]["status"], "affirming");
    assert_eq!(json["cti"], hex::encode((1..=16).collect::<Vec<u8>>()));
    assert_eq!(json["cnf"]["kid"], workload.kid());
    assert_eq!(json["appraisal"]["trust_vector"]["runtime-opaque"], 96);
    let back: Claims = serde_json::from_value(json).unwrap();
    assert_eq!(back, claims);
}

#[test]
fn new_cti_is_sixteen_random_bytes() {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let a = new_cti(&rng).unwrap();
    let b = new_cti(&rng).unwrap();
    assert_eq!(a.len(), CTI_LEN);
    assert_ne!(a, b);
}

#[test]
fn mint_refuses_claims_the_profile_forbids() {
    let broker = SigningKey::generate().unwrap();
    let mut claims = minimal_claims();
    claims.cti = vec![1; 15];
    assert_eq!(
        mint(&claims, &broker),
        Err(TokenError::ClaimLength {
            claim: "cti",
            expected: 16,
            actual: 15
        })
    );
    let mut claims = minimal_claims();
    claims.workload_digest = Some(vec![0; 20]);
    assert!(matches!(
        mint(&claims, &broker),
        Err(TokenError::ClaimLength {
            claim: "writ.workload-digest",
            ..
        })
    ));
    let mut claims = minimal_claims();
    claims.eat_nonce = Some(vec![0; 7]);
    assert!(matches!(
        mint(&claims, &broker),
        Err(TokenError::ClaimType { .. })
    ));
    let mut claims = minimal_claims();
    claims.lineage = Some(Lineage {
        parent_cti: vec![0; 16],
        parent_digest: vec![0; 32],
        depth: 0,
    });
    assert!(matches!(
        mint(&claims, &broker),
        Err(TokenError::ClaimType { .. })
    ));
}
