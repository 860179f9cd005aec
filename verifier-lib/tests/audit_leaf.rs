//! Deterministic CBOR leaf encoding: round trips and rejection of every
//! non-canonical form.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ciborium::Value;
use verifier_lib::audit::{AuditError, ClockBaseline, Decision, Leaf, Verdict};

pub fn all_decisions() -> Vec<Decision> {
    vec![
        Decision::Enrollment {
            host: "host-a".into(),
            accepted: true,
            ek_cert_digest: Some(vec![0xee; 32]),
            ak_name: vec![0x00, 0x0b, 0xaa],
            reason: None,
        },
        Decision::Enrollment {
            host: "host-b".into(),
            accepted: false,
            ek_cert_digest: None,
            ak_name: vec![],
            reason: Some("EK chain does not reach a trusted root".into()),
        },
        Decision::NonceIssued {
            host: "host-a".into(),
            nonce_digest: vec![1; 32],
        },
        Decision::Appraisal {
            host: "host-a".into(),
            evidence_digest: vec![2; 32],
            policy_id: "prod".into(),
            policy_hash: vec![3; 32],
            verdict: Verdict::Fail,
            failures: vec!["pcr 7 mismatch".into(), "ima: unknown file".into()],
            tpm_clock: None,
            nonce_digest: None,
            policy_signer: None,
            warnings: vec![],
        },
        Decision::Appraisal {
            host: "h".into(),
            evidence_digest: vec![],
            policy_id: String::new(),
            policy_hash: vec![],
            verdict: Verdict::Pass,
            failures: vec![],
            tpm_clock: Some(ClockBaseline {
                reset_count: 3,
                restart_count: 0,
                clock: u64::MAX,
                transition: "rebooted".into(),
            }),
            nonce_digest: Some(vec![9; 32]),
            policy_signer: Some("sha256:abcd".into()),
            warnings: vec![r#"{"rule":"weak_signature_hash_accepted"}"#.into()],
        },
        Decision::TokenMinted {
            cti: "t1".into(),
            sub: "host-a".into(),
            aud: "scheduler".into(),
            exp: 1_700_000_600,
            parent_cti: Some("t0".into()),
            token_digest: vec![4; 32],
        },
        Decision::TokenMinted {
            cti: "t2".into(),
            sub: "host-a".into(),
            aud: "x".into(),
            exp: -1,
            parent_cti: None,
            token_digest: vec![5; 48],
        },
        Decision::TokenRevoked {
            cti: "t1".into(),
            reason: "host revoked".into(),
        },
        Decision::HostRevoked {
            host: "host-a".into(),
            reason: "operator".into(),
        },
        Decision::HostStateChanged {
            host: "host-a".into(),
            from: "trusted".into(),
            to: "quarantined".into(),
            reason: "failed appraisal".into(),
        },
        Decision::PolicyActivated {
            policy_id: "prod".into(),
            policy_hash: vec![6; 32],
            previous_policy_hash: Some(vec![5; 32]),
        },
        Decision::PolicyActivated {
            policy_id: "first".into(),
            policy_hash: vec![6; 32],
            previous_policy_hash: None,
        },
        Decision::OperatorAction {
            who: "alice".into(),
            what: "rotate checkpoint key \u{1f511}".into(),
        },
    ]
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

fn value(bytes: &[u8]) -> Value {
    ciborium::from_reader(bytes).unwrap()
}

#[test]
fn every_decision_round_trips() {
    for (i, d) in all_decisions().into_iter().enumerate() {
        for time in [0i64, 23, 24, 1_700_000_000, -1, i64::MAX, i64::MIN] {
            let leaf = Leaf::new(time, d.clone());
            let bytes = leaf.encode();
            assert_eq!(Leaf::decode(&bytes).unwrap(), leaf, "decision {i}");
            assert_eq!(Leaf::decode(&bytes).unwrap().encode(), bytes);
        }
    }
}

#[test]
fn encoding_is_core_deterministic() {
    let leaf = Leaf::new(
        1_700_000_000,
        Decision::OperatorAction {
            who: "a".into(),
            what: "b".into(),
        },
    );
    let bytes = leaf.encode();
    let v = value(&bytes);
    let Value::Map(top) = &v else { panic!() };
    let keys: Vec<_> = top.iter().map(|(k, _)| cbor(k)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Hand-assembled RFC 8949 §4.2.1 encoding: keys sorted by encoded bytes
    // (shorter first), shortest integer forms.
    assert_eq!(
        hex::encode(&bytes),
        concat!(
            "a3",
            "6474696d65",
            "1a6553f100",
            "66736368656d61",
            "01",
            "686465636973696f6e",
            "a3",
            "6377686f",
            "6161",
            "646b696e64",
            "6f6f70657261746f725f616374696f6e",
            "6477686174",
            "6162"
        )
    );
}

/// Re-encodes with a header using a longer-than-needed length/argument.
fn widen_first_text_header(bytes: &[u8]) -> Vec<u8> {
    // Find the first short text-string header (0x60..0x77) after the map
    // header and re-encode it with a one-byte length (0x78 len).
    let pos = bytes
        .iter()
        .position(|b| (0x61..=0x77).contains(b))
        .unwrap();
    let len = bytes[pos] - 0x60;
    let mut out = bytes[..pos].to_vec();
    out.extend_from_slice(&[0x78, len]);
    out.extend_from_slice(&bytes[pos + 1..]);
    out
}

#[test]
fn non_canonical_encodings_are_rejected() {
    let leaf = Leaf::new(
        5,
        Decision::NonceIssued {
            host: "h".into(),
            nonce_digest: vec![9; 4],
        },
    );
    let bytes = leaf.encode();

    // Trailing bytes.
    let mut t = bytes.clone();
    t.push(0);
    assert!(matches!(
        Leaf::decode(&t),
        Err(AuditError::LeafTrailingBytes { count: 1 })
    ));
    // Non-shortest length.
    assert!(matches!(
        Leaf::decode(&widen_first_text_header(&bytes)),
        Err(AuditError::LeafNotCanonical)
    ));
    // Non-shortest integer: time 5 as 0x18 0x05.
    let Value::Map(mut top) = value(&bytes) else {
        panic!()
    };
    let enc = cbor(&Value::Map(top.clone()));
    assert_eq!(enc, bytes);
    let pos = bytes.windows(5).position(|w| w == b"\x64time").unwrap() + 5;
    let mut wide = bytes[..pos].to_vec();
    wide.extend_from_slice(&[0x18, 0x05]);
    wide.extend_from_slice(&bytes[pos + 1..]);
    assert!(matches!(
        Leaf::decode(&wide),
        Err(AuditError::LeafNotCanonical)
    ));
    // Indefinite-length map.
    let mut indef = vec![0xbf];
    indef.extend_from_slice(&bytes[1..]);
    indef.push(0xff);
    assert!(Leaf::decode(&indef).is_err());
    // Unsorted keys.
    top.reverse();
    assert!(matches!(
        Leaf::decode(&cbor(&Value::Map(top.clone()))),
        Err(AuditError::LeafNotCanonical)
    ));
    top.reverse();
    // Unknown field.
    let mut extra = top.clone();
    extra.push((Value::Text("zzzzzzzzzz".into()), Value::Integer(1.into())));
    assert!(matches!(
        Leaf::decode(&cbor(&Value::Map(extra))),
        Err(AuditError::LeafUnknownField { .. })
    ));
    // Duplicate key.
    let mut dup = top.clone();
    dup.insert(0, top[0].clone());
    assert!(matches!(
        Leaf::decode(&cbor(&Value::Map(dup))),
        Err(AuditError::LeafDuplicateKey { .. })
    ));
    // Wrong schema.
    let mut schema = top.clone();
    schema[1].1 = Value::Integer(2.into());
    assert!(matches!(
        Leaf::decode(&cbor(&Value::Map(schema))),
        Err(AuditError::LeafSchema {
            expected: 1,
            actual: 2
        })
    ));
    // Tagged value, float, null for an optional field, text for bytes.
    let mut tagged = top.clone();
    tagged[0].1 = Value::Tag(1, Box::new(Value::Integer(5.into())));
    assert!(Leaf::decode(&cbor(&Value::Map(tagged))).is_err());
    let mut float = top.clone();
    float[0].1 = Value::Float(5.0);
    assert!(Leaf::decode(&cbor(&Value::Map(float))).is_err());
    let enroll = Leaf::new(
        1,
        Decision::Enrollment {
            host: "h".into(),
            accepted: true,
            ek_cert_digest: None,
            ak_name: vec![1],
            reason: None,
        },
    );
    let Value::Map(mut top) = value(&enroll.encode()) else {
        panic!()
    };
    let Value::Map(ref mut d) = top[2].1 else {
        panic!()
    };
    d.push((Value::Text("reason".into()), Value::Null));
    assert!(Leaf::decode(&cbor(&Value::Map(top.clone()))).is_err());
    let Value::Map(ref mut d) = top[2].1 else {
        panic!()
    };
    d.pop();
    let ak = d
        .iter_mut()
        .find(|(k, _)| *k == Value::Text("ak_name".into()))
        .unwrap();
    ak.1 = Value::Text("01".into());
    assert!(matches!(
        Leaf::decode(&cbor(&Value::Map(top))),
        Err(AuditError::LeafField {
            field: "ak_name",
            ..
        })
    ));
    // Unknown kind, missing field, garbage.
    let odd = hex::decode(
        "a3647469 6d650166736368656d6101686465636973696f6ea1646b696e64636e6f70".replace(' ', ""),
    )
    .unwrap();
    assert!(matches!(
        Leaf::decode(&odd),
        Err(AuditError::LeafUnknownKind { .. })
    ));
    assert!(Leaf::decode(&[]).is_err());
    assert!(Leaf::decode(&[0xff]).is_err());
    assert!(Leaf::decode(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(matches!(
        Leaf::decode(&vec![0u8; (1 << 20) + 1]),
        Err(AuditError::LeafTooLarge { .. })
    ));
}

#[test]
fn leaf_serializes_to_json_with_hex_digests() {
    let leaf = Leaf::new(
        7,
        Decision::PolicyActivated {
            policy_id: "p".into(),
            policy_hash: vec![0xab, 0xcd],
            previous_policy_hash: None,
        },
    );
    let json = serde_json::to_value(&leaf).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"schema":1,"time":7,"decision":{"kind":"policy_activated","policy_id":"p","policy_hash":"abcd"}})
    );
}
