//! Key material: RFC 7638 kids, PKCS#8 PEM, COSE_Key(Set) and JWK(S), and an
//! independent ES256 implementation (RustCrypto `p256`) checking our
//! signatures and producing signatures we must accept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod token_common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::value::Value;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use sha2::{Digest, Sha256};
use token_common::*;
use verifier_lib::token::*;

/// RFC 7638 §3 computed independently: required members only, sorted, no whitespace.
fn rfc7638(x: &[u8], y: &[u8]) -> String {
    let json = format!(
        "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{}\",\"y\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

#[test]
fn kid_is_the_rfc7638_thumbprint() {
    for _ in 0..8 {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        assert_eq!(vk.sec1_point().len(), 65);
        assert_eq!(key.kid(), rfc7638(vk.x(), vk.y()));
        assert_eq!(vk.kid, key.kid());
        assert_eq!(key.kid().len(), 43);
    }
}

#[test]
fn kid_matches_p256_jwk_of_the_same_point() {
    // p256 serializes the JWK itself; the thumbprint over its x/y must agree.
    let key = SigningKey::generate().unwrap();
    let vk = key.verifying_key();
    let pk = p256::PublicKey::from_sec1_bytes(vk.sec1_point()).unwrap();
    let jwk: serde_json::Value = serde_json::from_str(&pk.to_jwk_string()).unwrap();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    assert_eq!(rfc7638(&x, &y), key.kid());
    // And p256 reads our JWK's key members back to the same point (it
    // refuses the optional members kid/alg/use, so pass only the required ones).
    let full = vk.to_jwk();
    let ours = serde_json::json!({
        "kty": full["kty"], "crv": full["crv"], "x": full["x"], "y": full["y"],
    })
    .to_string();
    let back = p256::PublicKey::from_jwk_str(&ours).unwrap();
    assert_eq!(back, pk);
}

#[test]
fn pkcs8_pem_round_trip() {
    let key = SigningKey::generate().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(!pem.contains('\r'));
    let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.kid(), key.kid());
    let der = key.to_pkcs8_der().unwrap();
    assert_eq!(SigningKey::from_pkcs8_der(&der).unwrap().kid(), key.kid());
    // A token minted by the reloaded key verifies under the original's key set.
    let token = mint(&minimal_claims(), &back).unwrap();
    assert!(verifier_for(&key).verify(&token, NOW).is_ok());
    // p256 parses the same PKCS#8 to the same public key.
    use p256::pkcs8::DecodePrivateKey;
    let sk = p256::SecretKey::from_pkcs8_der(&der).unwrap();
    assert_eq!(
        sk.public_key().to_sec1_bytes().as_ref(),
        key.verifying_key().sec1_point()
    );
    // Debug never shows the private key.
    let dbg = format!("{key:?}");
    assert!(dbg.contains(&key.kid()) && !dbg.contains(&hex::encode(&der)));
}

#[test]
fn pem_with_wrong_label_or_garbage_is_rejected() {
    let key = SigningKey::generate().unwrap();
    let pem = key
        .to_pkcs8_pem()
        .unwrap()
        .replace("PRIVATE KEY", "EC PRIVATE KEY");
    assert_eq!(
        SigningKey::from_pkcs8_pem(&pem).unwrap_err(),
        TokenError::PemLabel {
            expected: "PRIVATE KEY",
            actual: "EC PRIVATE KEY".into()
        }
    );
    assert_eq!(
        SigningKey::from_pkcs8_pem("nope").unwrap_err(),
        TokenError::PemMalformed
    );
    assert!(matches!(
        SigningKey::from_pkcs8_der(&[0x30, 0x00]),
        Err(TokenError::KeyRejected { .. })
    ));
}

#[test]
fn cose_key_set_round_trip() {
    let keys: Vec<_> = (0..3)
        .map(|_| SigningKey::generate().unwrap().verifying_key())
        .collect();
    let set = KeySet::new(keys.clone()).unwrap();
    let bytes = set.to_cose_key_set().unwrap();
    let back = KeySet::from_cose_key_set(&bytes).unwrap();
    assert_eq!(back, set);
    for k in &keys {
        assert_eq!(back.find(&k.kid), Some(k));
    }
    assert_eq!(back.find("no-such-kid"), None);
    // Deterministic: encoding twice gives the same bytes.
    assert_eq!(back.to_cose_key_set().unwrap(), bytes);
    // Each COSE_Key is EC2 / P-256 with kid, alg ES256, x, y — checked by hand.
    let Value::Array(items) = ciborium::de::from_reader::<Value, _>(bytes.as_slice()).unwrap()
    else {
        panic!()
    };
    for (item, k) in items.iter().zip(&keys) {
        let Value::Map(m) = item else { panic!() };
        let want = vec![
            (int(1), int(2)),
            (int(2), Value::Bytes(k.kid.as_bytes().to_vec())),
            (int(3), int(-7)),
            (int(-1), int(1)),
            (int(-2), Value::Bytes(k.x().to_vec())),
            (int(-3), Value::Bytes(k.y().to_vec())),
        ];
        assert_eq!(m, &want);
    }
    // Single-key helpers agree.
    let one = keys[0].to_cose_key_bytes().unwrap();
    assert_eq!(VerifyingKey::from_cose_key_bytes(&one).unwrap(), keys[0]);
}

#[test]
fn jwks_round_trip_and_cross_format() {
    let keys: Vec<_> = (0..3)
        .map(|_| SigningKey::generate().unwrap().verifying_key())
        .collect();
    let set = KeySet::new(keys).unwrap();
    let jwks = set.to_jwks_json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    let back = KeySet::from_jwks_json(&jwks).unwrap();
    assert_eq!(back, set);
    let via_cose = KeySet::from_cose_key_set(&back.to_cose_key_set().unwrap()).unwrap();
    assert_eq!(via_cose.to_jwks_json(), jwks);
    // Minimal JWK (no kid/alg/use) is accepted; the kid is computed.
    let k = &set.keys[0];
    let minimal = serde_json::json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(k.x()), "y": URL_SAFE_NO_PAD.encode(k.y()),
    });
    assert_eq!(VerifyingKey::from_jwk(&minimal).unwrap(), *k);
}

#[test]
fn bad_jwks_are_rejected() {
    let key = SigningKey::generate().unwrap();
    let good = key.verifying_key().to_jwk();
    let with = |field: &str, value: serde_json::Value| {
        let mut j = good.clone();
        j[field] = value;
        VerifyingKey::from_jwk(&j).unwrap_err()
    };
    assert!(matches!(
        with("kid", "other".into()),
        TokenError::KidMismatch { .. }
    ));
    assert!(matches!(
        with("d", "AAAA".into()),
        TokenError::PrivateKeyComponent { field: "d", .. }
    ));
    assert!(matches!(
        with("crv", "P-384".into()),
        TokenError::KeyField { field: "crv", .. }
    ));
    assert!(matches!(
        with("kty", "RSA".into()),
        TokenError::KeyField { field: "kty", .. }
    ));
    assert!(matches!(
        with("alg", "ES384".into()),
        TokenError::KeyField { field: "alg", .. }
    ));
    assert!(matches!(
        with("use", "enc".into()),
        TokenError::KeyField { field: "use", .. }
    ));
    assert!(matches!(
        with("x", "AAAA".into()),
        TokenError::KeyField { field: "x", .. }
    ));
    assert!(matches!(
        with("y", 5.into()),
        TokenError::KeyField { field: "y", .. }
    ));
    // A point not on the curve.
    let off_curve = with("y", URL_SAFE_NO_PAD.encode([0x01; 32]).into());
    assert!(
        matches!(off_curve, TokenError::KeyRejected { .. }),
        "{off_curve:?}"
    );
    // Duplicate kids in a set.
    let dup = serde_json::json!({ "keys": [good.clone(), good] });
    assert_eq!(
        KeySet::from_jwks_json(&dup).unwrap_err(),
        TokenError::DuplicateKey { kid: key.kid() }
    );
    assert!(KeySet::from_jwks_json(&serde_json::json!({})).is_err());
}

#[test]
fn bad_cose_keys_are_rejected() {
    let key = SigningKey::generate().unwrap().verifying_key();
    let edit = |f: &dyn Fn(&mut CborMap)| {
        let Value::Map(mut m) =
            ciborium::de::from_reader::<Value, _>(key.to_cose_key_bytes().unwrap().as_slice())
                .unwrap()
        else {
            panic!()
        };
        f(&mut m);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&Value::Map(m), &mut out).unwrap();
        VerifyingKey::from_cose_key_bytes(&out).unwrap_err()
    };
    assert!(matches!(
        edit(&|m| set(m, 2, Value::Bytes(b"other".to_vec()))),
        TokenError::KidMismatch { .. }
    ));
    assert!(matches!(
        edit(&|m| set(m, -4, Value::Bytes(vec![1; 32]))),
        TokenError::PrivateKeyComponent { .. }
    ));
    assert!(matches!(
        edit(&|m| set(m, -1, int(2))),
        TokenError::KeyField { .. }
    ));
    assert!(matches!(
        edit(&|m| set(m, 1, int(1))),
        TokenError::KeyField { .. }
    ));
    assert!(matches!(
        edit(&|m| set(m, 3, int(-35))),
        TokenError::KeyField { .. }
    ));
    assert!(matches!(
        edit(&|m| set(m, -3, Value::Bool(true))),
        TokenError::KeyField { .. }
    ));
    assert!(matches!(
        edit(&|m| m.push((int(-2), Value::Bytes(vec![0; 32])))),
        TokenError::Cose { .. }
    ));
    // Trailing bytes after a key set.
    let mut bytes = KeySet::new(vec![key.clone()])
        .unwrap()
        .to_cose_key_set()
        .unwrap();
    bytes.push(0);
    assert_eq!(
        KeySet::from_cose_key_set(&bytes).unwrap_err(),
        TokenError::TrailingBytes {
            what: "COSE_KeySet",
            count: 1
        }
    );
    // Duplicate kids.
    let dup = KeySet {
        keys: vec![key.clone(), key.clone()],
    }
    .to_cose_key_set()
    .unwrap();
    assert_eq!(
        KeySet::from_cose_key_set(&dup).unwrap_err(),
        TokenError::DuplicateKey {
            kid: key.kid.clone()
        }
    );
}

type CborMap = Vec<(Value, Value)>;

/// CBOR head for major type `major` with argument `n` (RFC 8949 §3), written
/// here by hand so the Sig_structure below does not come from coset.
fn head(major: u8, n: usize) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => vec![m | 25, (n >> 8) as u8, n as u8],
        _ => {
            let mut v = vec![m | 26];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        }
    }
}

fn bstr(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len());
    v.extend_from_slice(b);
    v
}

/// RFC 9052 §4.4: ["Signature1", protected, external_aad = h'', payload].
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x84, 0x6a];
    v.extend_from_slice(b"Signature1");
    v.extend(bstr(protected));
    v.extend(bstr(&[]));
    v.extend(bstr(payload));
    v
}

#[test]
fn p256_crate_verifies_our_signature_over_a_hand_built_sig_structure() {
    let broker = SigningKey::generate().unwrap();
    let workload = SigningKey::generate().unwrap();
    let token = mint(&full_claims(&workload), &broker).unwrap();
    // Split the COSE_Sign1 with plain ciborium, not coset.
    let Value::Tag(18, body) = ciborium::de::from_reader::<Value, _>(token.as_slice()).unwrap()
    else {
        panic!("not tag 18")
    };
    let Value::Array(parts) = *body else { panic!() };
    let [Value::Bytes(protected), Value::Map(unprotected), Value::Bytes(payload), Value::Bytes(sig)] =
        parts.as_slice()
    else {
        panic!("not a COSE_Sign1 array")
    };
    assert!(unprotected.is_empty());
    let tbs = sig_structure(protected, payload);
    let vk =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(broker.verifying_key().sec1_point()).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(sig).unwrap();
    vk.verify(&tbs, &sig).unwrap();
    // And a different message does not verify.
    let mut other = tbs.clone();
    *other.last_mut().unwrap() ^= 1;
    assert!(vk.verify(&other, &sig).is_err());
}

#[test]
fn we_verify_a_token_signed_by_the_p256_crate() {
    // Build the whole token by hand and sign with RustCrypto's ECDSA.
    let sk = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let point = sk.verifying_key().to_encoded_point(false);
    let vk = VerifyingKey::from_sec1(point.as_bytes()).unwrap();
    let mut protected = vec![0xa2, 0x01, 0x26, 0x04];
    protected.extend(bstr(vk.kid.as_bytes()));
    let claims = minimal_claims();
    let payload = claims.to_cbor_bytes().unwrap();
    let sig: p256::ecdsa::Signature = sk.sign(&sig_structure(&protected, &payload));
    let mut token = vec![0xd2, 0x84];
    token.extend(bstr(&protected));
    token.push(0xa0);
    token.extend(bstr(&payload));
    token.extend(bstr(&sig.to_bytes()));
    let v = TokenVerifier::new(KeySet::new(vec![vk.clone()]).unwrap(), expectations());
    let verified = v.verify(&token, NOW).unwrap();
    assert_eq!(verified.claims, claims);
    assert_eq!(verified.kid, vk.kid);
}
