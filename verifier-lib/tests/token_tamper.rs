//! Tampering sweeps: no modification of a valid token may ever verify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod token_common;

use token_common::*;
use verifier_lib::token::*;

#[test]
fn every_single_bit_and_byte_flip_is_rejected() {
    let broker = SigningKey::generate().unwrap();
    let workload = SigningKey::generate().unwrap();
    let v = verifier_for(&broker);
    let token = mint(&full_claims(&workload), &broker).unwrap();
    assert!(v.verify(&token, NOW).is_ok());
    let mut checked = 0;
    for i in 0..token.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut t = token.clone();
            t[i] ^= mask;
            let result = v.verify(&t, NOW);
            assert!(result.is_err(), "flip {mask:#04x} at byte {i} verified");
            // Display decoding must not panic either way.
            let _ = decode_unverified(&t);
            checked += 1;
        }
    }
    assert_eq!(checked, token.len() * 3);
}

#[test]
fn signature_byte_flips_are_bad_signatures() {
    let broker = SigningKey::generate().unwrap();
    let v = verifier_for(&broker);
    let token = mint(&minimal_claims(), &broker).unwrap();
    // The 64-byte signature is the last item: bstr head 0x58 0x40 then r ‖ s.
    let start = token.len() - 64;
    assert_eq!(&token[start - 2..start], &[0x58, 0x40]);
    for i in start..token.len() {
        let mut t = token.clone();
        t[i] ^= 0x01;
        assert_eq!(
            v.verify(&t, NOW).unwrap_err(),
            TokenError::BadSignature,
            "byte {i}"
        );
    }
}

#[test]
fn payload_byte_flips_never_verify() {
    let broker = SigningKey::generate().unwrap();
    let workload = SigningKey::generate().unwrap();
    let v = verifier_for(&broker);
    let claims = full_claims(&workload);
    let token = mint(&claims, &broker).unwrap();
    let payload = claims.to_cbor_bytes().unwrap();
    let at = token
        .windows(payload.len())
        .position(|w| w == payload.as_slice())
        .unwrap();
    for i in at..at + payload.len() {
        for bit in 0..8 {
            let mut t = token.clone();
            t[i] ^= 1 << bit;
            assert!(
                v.verify(&t, NOW).is_err(),
                "payload byte {} bit {bit}",
                i - at
            );
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let broker = SigningKey::generate().unwrap();
    let v = verifier_for(&broker);
    let token = mint(&minimal_claims(), &broker).unwrap();
    for len in 0..token.len() {
        assert!(
            v.verify(&token[..len], NOW).is_err(),
            "prefix of {len} bytes verified"
        );
        assert!(decode_unverified(&token[..len]).is_err());
    }
}

#[test]
fn resigning_with_a_different_trusted_key_keeps_kid_binding() {
    // Two trusted keys: a token signed by key B but naming key A's kid fails.
    let a = SigningKey::generate().unwrap();
    let b = SigningKey::generate().unwrap();
    let v = TokenVerifier::new(
        KeySet::new(vec![a.verifying_key(), b.verifying_key()]).unwrap(),
        expectations(),
    );
    let forged = forge(
        writ_protected(&a),
        coset::Header::default(),
        minimal_claims().to_cbor_bytes().unwrap(),
        &b,
    );
    assert_eq!(
        v.verify(&forged, NOW).unwrap_err(),
        TokenError::BadSignature
    );
    assert_eq!(
        v.verify(&mint(&minimal_claims(), &b).unwrap(), NOW)
            .unwrap()
            .kid,
        b.kid()
    );
}
