//! Every verification rule of the Writ token profile, each forced to fail on
//! its own and checked for its specific `TokenError` variant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod token_common;

use ciborium::value::Value;
use coset::{iana, Header, HeaderBuilder, RegisteredLabelWithPrivate, TaggedCborSerializable};
use token_common::*;
use verifier_lib::token::*;

fn setup() -> (SigningKey, TokenVerifier) {
    let key = SigningKey::generate().unwrap();
    let v = verifier_for(&key);
    (key, v)
}

fn payload() -> Vec<u8> {
    minimal_claims().to_cbor_bytes().unwrap()
}

/// Mint `claims` and verify at NOW.
fn verify_claims(claims: &Claims) -> Result<VerifiedToken, TokenError> {
    let (key, v) = setup();
    v.verify(&mint(claims, &key).unwrap(), NOW)
}

/// Sign an edited claims map and verify it at NOW.
fn verify_edited(f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Result<VerifiedToken, TokenError> {
    let (key, v) = setup();
    v.verify(
        &sign_payload(edited_payload(&minimal_claims(), f), &key),
        NOW,
    )
}

#[test]
fn baseline_token_verifies() {
    let (key, v) = setup();
    assert!(v.verify(&sign_payload(payload(), &key), NOW).is_ok());
}

// ---- envelope -------------------------------------------------------------

#[test]
fn untagged_cose_sign1_is_rejected() {
    let (key, v) = setup();
    let token = sign_payload(payload(), &key);
    // Drop the one-byte tag head 0xd2.
    assert_eq!(token[0], 0xd2);
    assert_eq!(
        v.verify(&token[1..], NOW).unwrap_err(),
        TokenError::UnexpectedTag {
            expected: 18,
            actual: None
        }
    );
}

#[test]
fn other_tags_are_rejected() {
    let (key, v) = setup();
    let token = sign_payload(payload(), &key);
    for tag in [17u8, 19, 16, 98] {
        let mut t = token.clone();
        t[0] = 0xc0 | 0x18; // tag with 1-byte argument
        t.insert(1, tag);
        assert_eq!(
            v.verify(&t, NOW).unwrap_err(),
            TokenError::UnexpectedTag {
                expected: 18,
                actual: Some(u64::from(tag))
            }
        );
    }
    // CWT tag 61 around something other than tag 18.
    let mut t = vec![0xd8, 61];
    t.extend_from_slice(&token[1..]);
    assert_eq!(
        v.verify(&t, NOW).unwrap_err(),
        TokenError::UnexpectedTag {
            expected: 18,
            actual: None
        }
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let (key, v) = setup();
    let token = sign_payload(payload(), &key);
    for extra in [&[0x00][..], &[0xf6], &[0x40], &token[..]] {
        let mut t = token.clone();
        t.extend_from_slice(extra);
        assert_eq!(
            v.verify(&t, NOW).unwrap_err(),
            TokenError::TrailingBytes {
                what: "token",
                count: extra.len()
            }
        );
        assert!(decode_unverified(&t).is_err());
    }
}

#[test]
fn trailing_bytes_in_payload_are_rejected() {
    let (key, v) = setup();
    let mut p = payload();
    p.push(0x00);
    assert_eq!(
        v.verify(&sign_payload(p, &key), NOW).unwrap_err(),
        TokenError::TrailingBytes {
            what: "claims-set",
            count: 1
        }
    );
}

#[test]
fn detached_payload_is_rejected() {
    let (key, v) = setup();
    let token = coset::CoseSign1Builder::new()
        .protected(writ_protected(&key))
        .create_detached_signature(&payload(), b"", |tbs| key.sign(tbs).unwrap())
        .build()
        .to_tagged_vec()
        .unwrap();
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::DetachedPayload
    );
}

// ---- protected header -----------------------------------------------------

#[test]
fn absent_alg_is_rejected() {
    let (key, v) = setup();
    let protected = HeaderBuilder::new().key_id(key.kid().into_bytes()).build();
    let token = forge(protected, Header::default(), payload(), &key);
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::AlgorithmMissing
    );
}

#[test]
fn alg_none_is_rejected() {
    let (key, v) = setup();
    let protected = HeaderBuilder::new()
        .algorithm_label(RegisteredLabelWithPrivate::Text("none".into()))
        .key_id(key.kid().into_bytes())
        .build();
    let token = forge(protected, Header::default(), payload(), &key);
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::AlgorithmNotAllowed { alg: "none".into() }
    );
}

#[test]
fn every_other_alg_is_rejected() {
    let (key, v) = setup();
    for (alg, code) in [
        (iana::Algorithm::ES384, "-35"),
        (iana::Algorithm::ES512, "-36"),
        (iana::Algorithm::EdDSA, "-8"),
        (iana::Algorithm::PS256, "-37"),
        (iana::Algorithm::RS256, "-257"),
        (iana::Algorithm::HMAC_256_256, "5"),
        (iana::Algorithm::ES256K, "-47"),
        (iana::Algorithm::Direct, "-6"),
    ] {
        let protected = HeaderBuilder::new()
            .algorithm(alg)
            .key_id(key.kid().into_bytes())
            .build();
        // Signed with the real ES256 key: only the declared alg is wrong.
        let token = forge(protected, Header::default(), payload(), &key);
        assert_eq!(
            v.verify(&token, NOW).unwrap_err(),
            TokenError::AlgorithmNotAllowed { alg: code.into() },
            "{alg:?}"
        );
    }
    // A private-use algorithm value.
    let protected = HeaderBuilder::new()
        .algorithm_label(RegisteredLabelWithPrivate::PrivateUse(-65600))
        .key_id(key.kid().into_bytes())
        .build();
    let token = forge(protected, Header::default(), payload(), &key);
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::AlgorithmNotAllowed {
            alg: "-65600".into()
        }
    );
}

#[test]
fn alg_only_in_the_unprotected_header_is_rejected() {
    let (key, v) = setup();
    let protected = HeaderBuilder::new().key_id(key.kid().into_bytes()).build();
    let unprotected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .build();
    let token = forge(protected, unprotected, payload(), &key);
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::UnprotectedHeaderNotEmpty {
            labels: vec!["1".into()]
        }
    );
}

#[test]
fn any_crit_header_is_rejected() {
    let (key, v) = setup();
    for crit in [
        iana::HeaderParameter::Alg,
        iana::HeaderParameter::ContentType,
    ] {
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .key_id(key.kid().into_bytes())
            .add_critical(crit)
            .build();
        let token = forge(protected, Header::default(), payload(), &key);
        assert_eq!(
            v.verify(&token, NOW).unwrap_err(),
            TokenError::CriticalHeader {
                labels: vec![(crit as i64).to_string()]
            }
        );
    }
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(key.kid().into_bytes())
        .add_critical_label(RegisteredLabelWithPrivate::Text("writ-ext".into()))
        .text_value("writ-ext".into(), Value::Bool(true))
        .build();
    let token = forge(protected, Header::default(), payload(), &key);
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::CriticalHeader {
            labels: vec!["writ-ext".into()]
        }
    );
}

#[test]
fn nonempty_unprotected_header_is_rejected() {
    let (key, v) = setup();
    let unprotected = HeaderBuilder::new()
        .key_id(b"other".to_vec())
        .value(-70000, Value::Null)
        .build();
    let token = forge(writ_protected(&key), unprotected, payload(), &key);
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::UnprotectedHeaderNotEmpty {
            labels: vec!["4".into(), "-70000".into()]
        }
    );
}

#[test]
fn missing_kid_is_rejected() {
    let (key, v) = setup();
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .build();
    let token = forge(protected, Header::default(), payload(), &key);
    assert_eq!(v.verify(&token, NOW).unwrap_err(), TokenError::KidMissing);
    assert_eq!(
        decode_unverified(&token).unwrap_err(),
        TokenError::KidMissing
    );
}

#[test]
fn non_utf8_kid_is_rejected() {
    let (key, v) = setup();
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(vec![0xff, 0xfe])
        .build();
    let token = forge(protected, Header::default(), payload(), &key);
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::KidNotUtf8 {
            kid_hex: "fffe".into()
        }
    );
}

#[test]
fn unknown_kid_is_rejected() {
    let (_, v) = setup();
    let stranger = SigningKey::generate().unwrap();
    let token = mint(&minimal_claims(), &stranger).unwrap();
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::UnknownKey {
            kid: stranger.kid()
        }
    );
}

#[test]
fn signature_by_another_key_under_a_trusted_kid_is_rejected() {
    let (key, v) = setup();
    let attacker = SigningKey::generate().unwrap();
    let token = forge(
        writ_protected(&key),
        Header::default(),
        payload(),
        &attacker,
    );
    assert_eq!(v.verify(&token, NOW).unwrap_err(), TokenError::BadSignature);
}

#[test]
fn signature_with_external_aad_is_rejected() {
    let (key, v) = setup();
    let token = coset::CoseSign1Builder::new()
        .protected(writ_protected(&key))
        .payload(payload())
        .create_signature(b"some aad", |tbs| key.sign(tbs).unwrap())
        .build()
        .to_tagged_vec()
        .unwrap();
    assert_eq!(v.verify(&token, NOW).unwrap_err(), TokenError::BadSignature);
}

// ---- claims ---------------------------------------------------------------

#[test]
fn issuer_mismatch_is_rejected() {
    let mut c = minimal_claims();
    c.iss = "https://evil.test".into();
    assert_eq!(
        verify_claims(&c).unwrap_err(),
        TokenError::IssuerMismatch {
            expected: ISSUER.into(),
            actual: "https://evil.test".into()
        }
    );
}

#[test]
fn audience_mismatch_is_rejected_with_expected_and_actual() {
    let mut c = minimal_claims();
    c.aud = "workload:other".into();
    assert_eq!(
        verify_claims(&c).unwrap_err(),
        TokenError::AudienceMismatch {
            expected: AUDIENCE.into(),
            actual: "workload:other".into()
        }
    );
}

/// Regression (hardening): an audience is required to build `Expectations`;
/// a token minted for A is refused by a verifier built for B, and only the
/// explicit any-audience constructor accepts it.
#[test]
fn a_token_for_audience_a_is_refused_for_b_unless_any_audience_is_chosen() {
    let key = SigningKey::generate().unwrap();
    let keys = KeySet::new(vec![key.verifying_key()]).unwrap();
    let mut c = minimal_claims();
    c.aud = "workload:a".into();
    let token = mint(&c, &key).unwrap();

    let for_b = TokenVerifier::new(keys.clone(), Expectations::new(ISSUER, "workload:b"));
    assert_eq!(
        for_b.verify(&token, NOW).unwrap_err(),
        TokenError::AudienceMismatch {
            expected: "workload:b".into(),
            actual: "workload:a".into()
        }
    );
    let for_a = TokenVerifier::new(keys.clone(), Expectations::new(ISSUER, "workload:a"));
    assert_eq!(for_a.verify(&token, NOW).unwrap().claims.aud, "workload:a");

    let any = Expectations::any_audience(ISSUER);
    assert_eq!(any.audience, Audience::Any);
    let any = TokenVerifier::new(keys, any);
    assert_eq!(any.verify(&token, NOW).unwrap().claims.aud, "workload:a");
    // Any audience relaxes only the audience: the issuer is still checked.
    let mut other_issuer = minimal_claims();
    other_issuer.iss = "https://other.example".into();
    assert!(matches!(
        any.verify(&mint(&other_issuer, &key).unwrap(), NOW),
        Err(TokenError::IssuerMismatch { .. })
    ));
}

#[test]
fn expectations_constructors_name_their_audience() {
    let e = Expectations::new(ISSUER, AUDIENCE);
    assert_eq!(e.audience, Audience::Exactly(AUDIENCE.into()));
    assert_eq!(e.issuer, ISSUER);
    assert_eq!(e.leeway_secs, DEFAULT_LEEWAY_SECS);
    assert_eq!(e.max_lifetime_secs, DEFAULT_MAX_LIFETIME_SECS);
    assert!(!e.require_workload_digest);
    assert_eq!(
        serde_json::to_value(&e.audience).unwrap(),
        serde_json::json!({"exactly": AUDIENCE})
    );
    assert_eq!(
        serde_json::to_value(Audience::Any).unwrap(),
        serde_json::json!("any")
    );
}

#[test]
fn expiry_honours_leeway_exactly() {
    let (key, v) = setup();
    let c = minimal_claims(); // exp = NOW + 300, leeway 30
    let token = mint(&c, &key).unwrap();
    assert!(v.verify(&token, c.exp + 29).is_ok());
    assert_eq!(
        v.verify(&token, c.exp + 30).unwrap_err(),
        TokenError::Expired {
            exp: c.exp,
            now: c.exp + 30
        }
    );
    assert_eq!(
        v.verify(&token, i64::MAX).unwrap_err(),
        TokenError::Expired {
            exp: c.exp,
            now: i64::MAX
        }
    );
}

#[test]
fn not_yet_valid_honours_leeway_exactly() {
    let (key, v) = setup();
    let mut c = minimal_claims();
    c.nbf = NOW + 100;
    let token = mint(&c, &key).unwrap();
    assert!(v.verify(&token, NOW + 70).is_ok());
    assert_eq!(
        v.verify(&token, NOW + 69).unwrap_err(),
        TokenError::NotYetValid {
            nbf: NOW + 100,
            now: NOW + 69
        }
    );
}

#[test]
fn issued_in_the_future_is_rejected() {
    let (key, v) = setup();
    let mut c = minimal_claims();
    c.iat = NOW + 31;
    c.nbf = NOW;
    let token = mint(&c, &key).unwrap();
    assert_eq!(
        v.verify(&token, NOW).unwrap_err(),
        TokenError::IssuedInFuture {
            iat: NOW + 31,
            now: NOW
        }
    );
}

#[test]
fn lifetime_over_the_maximum_is_rejected() {
    let mut c = minimal_claims();
    c.exp = c.iat + 3601;
    assert_eq!(
        verify_claims(&c).unwrap_err(),
        TokenError::LifetimeTooLong {
            max: 3600,
            actual: 3601
        }
    );
    c.exp = c.iat + 3600;
    assert!(verify_claims(&c).is_ok());
    // Extreme values do not overflow.
    c.iat = i64::MIN;
    c.nbf = i64::MIN;
    c.exp = i64::MAX;
    assert_eq!(
        verify_claims(&c).unwrap_err(),
        TokenError::LifetimeTooLong {
            max: 3600,
            actual: i64::MAX
        }
    );
}

#[test]
fn exp_not_after_iat_is_rejected() {
    let mut c = minimal_claims();
    c.exp = c.iat;
    assert_eq!(
        verify_claims(&c).unwrap_err(),
        TokenError::ExpiresBeforeIssued {
            iat: c.iat,
            exp: c.iat
        }
    );
}

#[test]
fn wrong_profile_is_rejected() {
    let mut c = minimal_claims();
    c.eat_profile = "tag:github.com,2023:veraison/ear".into();
    assert_eq!(
        verify_claims(&c).unwrap_err(),
        TokenError::ProfileMismatch {
            expected: PROFILE.into(),
            actual: "tag:github.com,2023:veraison/ear".into()
        }
    );
}

#[test]
fn missing_workload_digest_is_rejected_when_required() {
    let key = SigningKey::generate().unwrap();
    let mut e = expectations();
    e.require_workload_digest = true;
    let v = TokenVerifier::new(KeySet::new(vec![key.verifying_key()]).unwrap(), e);
    let mut c = minimal_claims();
    assert_eq!(
        v.verify(&mint(&c, &key).unwrap(), NOW).unwrap_err(),
        TokenError::WorkloadDigestMissing
    );
    c.workload_digest = Some(vec![1; 32]);
    assert!(v.verify(&mint(&c, &key).unwrap(), NOW).is_ok());
}

#[test]
fn each_required_claim_is_required() {
    for (key, name) in [
        (1, "iss"),
        (2, "sub"),
        (3, "aud"),
        (4, "exp"),
        (5, "nbf"),
        (6, "iat"),
        (7, "cti"),
        (265, "eat_profile"),
        (1000, "ear.status"),
        (1003, "ear.appraisal-policy-id"),
        (1004, "ear.verifier-id"),
    ] {
        let err = verify_edited(|m| m.retain(|(k, _)| *k != int(key))).unwrap_err();
        assert_eq!(err, TokenError::ClaimMissing { claim: name }, "key {key}");
    }
}

#[test]
fn wrong_claim_types_name_the_claim() {
    let cases: Vec<(i64, Value, &str, &str)> = vec![
        (1, int(5), "iss", "text string"),
        (2, Value::Bytes(vec![1]), "sub", "text string"),
        (
            3,
            Value::Array(vec![Value::Text(AUDIENCE.into())]),
            "aud",
            "text string",
        ),
        (4, Value::Float(1.8e9), "exp", "integer"),
        (5, Value::Text("now".into()), "nbf", "integer"),
        (6, Value::Tag(1, Box::new(int(NOW))), "iat", "integer"),
        (
            4,
            Value::Integer(u64::MAX.into()),
            "exp",
            "integer in i64 range",
        ),
        (7, Value::Text("0102".into()), "cti", "byte string"),
        (
            10,
            Value::Bytes(vec![0; 65]),
            "eat_nonce",
            "byte string of 8 to 64 bytes",
        ),
        (265, int(265), "eat_profile", "text string"),
        (1000, int(1), "ear.status", "trust tier 0, 2, 32 or 96"),
        (
            1000,
            Value::Text("affirming".into()),
            "ear.status",
            "integer",
        ),
        (
            1003,
            Value::Array(vec![]),
            "ear.appraisal-policy-id",
            "text string",
        ),
        (1004, Value::Text("writ".into()), "ear.verifier-id", "map"),
        (
            1001,
            Value::Map(vec![(int(2), int(200))]),
            "ear.trustworthiness-vector/executables",
            "integer -128..=127",
        ),
        (
            1001,
            Value::Array(vec![]),
            "ear.trustworthiness-vector",
            "map",
        ),
        (
            266,
            Value::Map(vec![(int(1), Value::Map(vec![]))]),
            "submods key",
            "text map key",
        ),
        (
            266,
            Value::Map(vec![(
                Value::Text("tpm".into()),
                Value::Map(vec![(Value::Text("x".into()), Value::Null)]),
            )]),
            "submods/tpm/x",
            "byte string, text, integer or boolean",
        ),
        (-65539, int(-1), "writ.audit-index", "unsigned integer"),
        (
            -65540,
            Value::Text("read".into()),
            "writ.scope",
            "array of text strings",
        ),
        (
            -65540,
            Value::Array(vec![int(1)]),
            "writ.scope",
            "text string",
        ),
        (
            -65538,
            Value::Map(vec![
                (int(1), Value::Bytes(vec![0; 16])),
                (int(2), Value::Bytes(vec![0; 32])),
                (int(3), int(9)),
            ]),
            "writ.lineage/depth",
            "integer 1..=8 (MAX_LINEAGE_DEPTH)",
        ),
        (
            8,
            Value::Map(vec![(int(3), Value::Bytes(vec![1]))]),
            "cnf",
            "map holding a COSE_Key under key 1",
        ),
        // `writ.offline-ok` is present only as `true`.
        (
            -65541,
            Value::Bool(false),
            "writ.offline-ok",
            "true (omitted when false)",
        ),
        (
            -65541,
            int(1),
            "writ.offline-ok",
            "true (omitted when false)",
        ),
    ];
    for (key, value, claim, expected) in cases {
        let err = verify_edited(|m| set(m, key, value.clone())).unwrap_err();
        assert_eq!(
            err,
            TokenError::ClaimType {
                claim: claim.into(),
                expected
            },
            "key {key} value {value:?}"
        );
    }
}

#[test]
fn wrong_lengths_are_rejected() {
    for (key, len, claim, expected) in [
        (7, 15usize, "cti", 16usize),
        (7, 17, "cti", 16),
        (7, 0, "cti", 16),
        (-65537, 31, "writ.workload-digest", 32),
    ] {
        let err = verify_edited(|m| set(m, key, Value::Bytes(vec![0; len]))).unwrap_err();
        assert_eq!(
            err,
            TokenError::ClaimLength {
                claim,
                expected,
                actual: len
            }
        );
    }
}

#[test]
fn duplicated_claim_keys_are_rejected() {
    // Same key twice at top level, even with the same value.
    let err = verify_edited(|m| m.push((int(1), Value::Text(ISSUER.into())))).unwrap_err();
    assert!(matches!(err, TokenError::DuplicateClaim { .. }), "{err:?}");
    // Duplicate unknown keys, integer and text.
    let err = verify_edited(|m| {
        m.push((int(99), int(1)));
        m.push((int(99), int(2)));
    })
    .unwrap_err();
    assert!(matches!(err, TokenError::DuplicateClaim { .. }), "{err:?}");
    let err = verify_edited(|m| {
        m.push((Value::Text("x".into()), int(1)));
        m.push((Value::Text("x".into()), int(1)));
    })
    .unwrap_err();
    assert!(matches!(err, TokenError::DuplicateClaim { .. }), "{err:?}");
    // Inside a nested map.
    let err = verify_edited(|m| {
        set(
            m,
            1001,
            Value::Map(vec![(int(0), int(2)), (int(0), int(2))]),
        )
    })
    .unwrap_err();
    assert!(matches!(err, TokenError::DuplicateClaim { .. }), "{err:?}");
}

#[test]
fn unknown_claims_are_ignored() {
    let verified = verify_edited(|m| {
        m.push((int(99), Value::Text("future".into())));
        m.push((int(-70000), Value::Array(vec![Value::Null])));
        m.push((Value::Text("x-vendor".into()), Value::Bool(true)));
        m.push((Value::Integer(u64::MAX.into()), Value::Null));
    })
    .unwrap();
    assert_eq!(verified.claims, minimal_claims());
}

#[test]
fn claims_set_must_be_a_map() {
    let (key, v) = setup();
    let mut arr = Vec::new();
    ciborium::ser::into_writer(&Value::Array(vec![]), &mut arr).unwrap();
    assert_eq!(
        v.verify(&sign_payload(arr, &key), NOW).unwrap_err(),
        TokenError::ClaimType {
            claim: "claims-set".into(),
            expected: "map"
        }
    );
    assert_eq!(
        v.verify(&sign_payload(vec![0xff], &key), NOW).unwrap_err(),
        TokenError::Cbor { what: "claims-set" }
    );
}

#[test]
fn signature_is_checked_even_when_claims_would_pass() {
    // A forged token whose claims are perfect must still fail on the signature.
    let (key, v) = setup();
    let mut token = mint(&minimal_claims(), &key).unwrap();
    let last = token.len() - 1;
    token[last] ^= 0x01;
    assert_eq!(v.verify(&token, NOW).unwrap_err(), TokenError::BadSignature);
}
