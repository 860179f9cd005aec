use std::process::Command;

use super::array::inflate;
use super::*;

fn keys() -> (SigningKey, KeySet) {
    let k = SigningKey::generate().unwrap();
    let set = KeySet::new(vec![k.verifying_key()]).unwrap();
    (k, set)
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const URI: &str = "https://writ.example/v1/status/lists/1";

fn list(statuses: StatusArray) -> StatusList {
    StatusList {
        uri: URI.into(),
        version: 7,
        issued_at: 100,
        expires_at: 400,
        ttl: Some(60),
        statuses,
    }
}

fn token_ref(idx: u64) -> StatusRef {
    StatusRef {
        idx,
        uri: URI.into(),
    }
}

// The draft's one-bit example: 16 entries, these set, the rest 0.
const ONE_BIT_SET: [u64; 9] = [0, 3, 4, 5, 7, 8, 9, 13, 15];

#[test]
fn draft_vector_one_bit() {
    let mut a = StatusArray::new(Bits::One, 16);
    for i in ONE_BIT_SET {
        a.set(i, 1).unwrap();
    }
    assert_eq!(a.packed(), [0xb9, 0xa3]);
    // The draft's compressed form decompresses to the same bytes; ours
    // (another zlib level may give other bytes) does too.
    let theirs = StatusArray::decompress(Bits::One, &unhex("78dadbb918000217015d"), 1024).unwrap();
    assert_eq!(theirs, a);
    let ours = StatusArray::decompress(Bits::One, &a.compress().unwrap(), 1024).unwrap();
    assert_eq!(ours, a);
    for i in 0..16 {
        assert_eq!(a.get(i).unwrap(), u8::from(ONE_BIT_SET.contains(&i)), "{i}");
    }
}

#[test]
fn draft_vector_two_bits() {
    let statuses = [1u8, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
    let mut a = StatusArray::new(Bits::Two, statuses.len());
    for (i, s) in statuses.iter().enumerate() {
        a.set(i as u64, *s).unwrap();
    }
    assert_eq!(a.packed(), [0xc9, 0x44, 0xf9]);
    let theirs =
        StatusArray::decompress(Bits::Two, &unhex("78da3be9f2130003df0207"), 1024).unwrap();
    assert_eq!(theirs, a);
    assert_eq!(
        a.set(0, 4),
        Err(StatusError::StatusValue { value: 4, bits: 2 })
    );
    assert_eq!(
        a.get(12),
        Err(StatusError::IndexOutOfRange { idx: 12, len: 12 })
    );
}

#[test]
fn bits_outside_1_2_4_8_are_refused() {
    for b in [0u64, 3, 5, 16] {
        assert_eq!(Bits::from_u64(b), Err(StatusError::Bits { actual: b }));
    }
    let mut a = StatusArray::new(Bits::Eight, 2);
    a.set(1, 0xff).unwrap();
    assert_eq!(a.packed(), [0, 0xff]);
    let mut a = StatusArray::new(Bits::Four, 3);
    a.set(2, 0xa).unwrap();
    assert_eq!(a.packed(), [0, 0x0a]);
}

#[test]
fn lst_must_be_one_bounded_zlib_stream() {
    let good = unhex("78dadbb918000217015d");
    assert_eq!(inflate(&good[..6], 1024), Err(StatusError::LstTruncated));
    assert_eq!(inflate(b"not zlib", 1024), Err(StatusError::LstNotZlib));
    let mut trailing = good.clone();
    trailing.extend([0, 0]);
    assert_eq!(
        inflate(&trailing, 1024),
        Err(StatusError::LstTrailingBytes { count: 2 })
    );
    // A bomb: 64 MiB of zeros compress to ~64 KiB; the cap stops it early.
    let bomb = StatusArray::new(Bits::One, 64 * 1024 * 1024 * 8)
        .compress()
        .unwrap();
    assert!(bomb.len() < 100 * 1024, "{}", bomb.len());
    assert_eq!(
        inflate(&bomb, DEFAULT_MAX_DECOMPRESSED),
        Err(StatusError::LstTooLarge {
            max: DEFAULT_MAX_DECOMPRESSED
        })
    );
    // Exactly at the cap is fine.
    assert_eq!(inflate(&good, 2).unwrap(), [0xb9, 0xa3]);
    assert_eq!(inflate(&good, 1), Err(StatusError::LstTooLarge { max: 1 }));
}

#[test]
fn signed_round_trip_and_token_lookup() {
    let (k, set) = keys();
    let mut a = StatusArray::new(Bits::One, 1024);
    a.set(5, INVALID).unwrap();
    let l = list(a);
    let signed = l.sign(&k).unwrap();
    let back = verify_at(&signed, &set, URI, ListCheck::at(200, 0)).unwrap();
    assert_eq!(back, l);
    assert_eq!(back.status_of(Some(&token_ref(5))), Ok(INVALID));
    assert_eq!(back.status_of(Some(&token_ref(6))), Ok(VALID));
    assert_eq!(
        back.status_of(Some(&token_ref(1024))),
        Err(StatusError::IndexOutOfRange {
            idx: 1024,
            len: 1024
        })
    );
    assert_eq!(back.status_of(None), Err(StatusError::TokenUnlisted));
    let elsewhere = StatusRef {
        idx: 5,
        uri: "https://writ.example/v1/status/lists/2".into(),
    };
    assert!(matches!(
        back.status_of(Some(&elsewhere)),
        Err(StatusError::UriMismatch { .. })
    ));
    assert!(matches!(
        verify_at(&signed, &set, &elsewhere.uri, ListCheck::at(200, 0)),
        Err(StatusError::UriMismatch { .. })
    ));
}

#[test]
fn refuses_expired_future_wrong_key_tampering_and_tokens() {
    let (k, set) = keys();
    let signed = list(StatusArray::new(Bits::One, 8)).sign(&k).unwrap();
    assert_eq!(
        verify(&signed, &set, ListCheck::at(400, 0)),
        Err(StatusError::Expired {
            expires_at: 400,
            now: 400
        })
    );
    assert_eq!(
        verify(&signed, &set, ListCheck::at(90, 5)),
        Err(StatusError::IssuedInFuture {
            issued_at: 100,
            now: 90
        })
    );
    let (_, other) = keys();
    assert!(matches!(
        verify(&signed, &other, ListCheck::at(200, 0)),
        Err(StatusError::Envelope(TokenError::UnknownKey { .. }))
    ));
    let mut bad = signed.clone();
    let pos = bad
        .windows(URI.len())
        .position(|w| w == URI.as_bytes())
        .unwrap();
    bad[pos] ^= 1;
    assert_eq!(
        verify(&bad, &set, ListCheck::at(200, 0)),
        Err(StatusError::Envelope(TokenError::BadSignature))
    );
    // A document with a content type (a token, a proof) is not a list.
    let token = crate::signed::seal(vec![0xa0], &k, "application/cwt", true).unwrap();
    assert!(matches!(
        verify(&token, &set, ListCheck::at(200, 0)),
        Err(StatusError::ContentTypePresent { .. })
    ));
    let other_typ = crate::signed::seal_typed(vec![0xa0], &k, "application/cwt").unwrap();
    assert_eq!(
        verify(&other_typ, &set, ListCheck::at(200, 0)),
        Err(StatusError::Typ {
            expected: TYP,
            actual: Some("application/cwt".into())
        })
    );
}

#[test]
fn the_decompression_cap_is_the_callers() {
    let (k, set) = keys();
    let signed = list(StatusArray::new(Bits::One, 8 * 4096))
        .sign(&k)
        .unwrap();
    let check = ListCheck {
        max_decompressed: 1024,
        ..ListCheck::at(200, 0)
    };
    assert_eq!(
        verify(&signed, &set, check),
        Err(StatusError::LstTooLarge { max: 1024 })
    );
}

/// Python's zlib and cbor2 read what we write: no encoder or decoder shared
/// with this crate. Fails (does not skip) without python3-cbor2, which
/// `deploy/install-deps.sh` installs for the system interpreter
/// (`/usr/bin/python3`; `WRIT_TEST_PYTHON` names another one).
#[test]
fn python_decodes_the_signed_list() {
    let (k, _) = keys();
    let mut a = StatusArray::new(Bits::One, 100_000);
    let set_at = [0u64, 7, 8, 4242, 99_999];
    for i in set_at {
        a.set(i, INVALID).unwrap();
    }
    let signed = list(a).sign(&k).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.cwt");
    std::fs::write(&path, &signed).unwrap();
    let script = r#"
import sys, zlib, cbor2
doc = cbor2.loads(open(sys.argv[1], 'rb').read())
assert doc.tag == 18, doc.tag
protected, unprotected, payload, sig = doc.value
hdr = cbor2.loads(protected)
assert hdr[1] == -7 and hdr[16] == 'application/statuslist+cwt', hdr
assert unprotected == {}
claims = cbor2.loads(payload)
sl = claims[65533]
assert sl['bits'] == 1
raw = zlib.decompress(sl['lst'])
set_at = [i for i in range(len(raw) * 8) if raw[i // 8] >> (i % 8) & 1]
print(claims[2], claims[6], claims[4], claims[65534], len(raw), ' '.join(map(str, set_at)))
"#;
    let python = std::env::var("WRIT_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("{python} is required (deploy/install-deps.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "python3 + cbor2 could not decode the list (install python3-cbor2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{URI} 100 400 60 12500 0 7 8 4242 99999")
    );
}
