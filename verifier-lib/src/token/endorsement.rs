//! Token-key endorsements: how a holder of pinned broker keys learns a
//! rotated key without trusting the connection it fetched it over.
//!
//! When the broker rotates its token key, the old key signs the new one: a
//! tagged COSE_Sign1 whose protected header is `{1: -7 (ES256), 3:
//! "application/writ-key-endorsement", 4: endorser kid}` and whose payload
//! is the new key as a COSE_Key. The content type separates endorsements
//! from tokens (a token has no content type and its payload is a claims set,
//! not a key).
//!
//! An attester pins the key set it saw at enrollment; later it accepts a
//! served key only if it is pinned or reachable from a pinned key through a
//! chain of endorsements ([`advance_pinned`]).

use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};

use super::envelope;
use super::verify::{check_headers, kid_of};
use super::{KeySet, SigningKey, TokenError, VerifyingKey};

/// Content type (COSE header 3) of a key endorsement.
pub const ENDORSEMENT_CONTENT_TYPE: &str = "application/writ-key-endorsement";

/// Largest number of endorsements [`advance_pinned`] considers.
pub const MAX_ENDORSEMENTS: usize = 64;

/// `endorser` signs `endorsed`: the rotation statement "the holder of my key
/// also speaks with this one".
pub fn endorse(endorser: &SigningKey, endorsed: &VerifyingKey) -> Result<Vec<u8>, TokenError> {
    let payload = endorsed.to_cose_key_bytes()?;
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .content_type(ENDORSEMENT_CONTENT_TYPE.to_owned())
        .key_id(endorser.kid().into_bytes())
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .try_create_signature(b"", |tbs| endorser.sign(tbs))?
        .build()
        .to_tagged_vec()
        .map_err(|_| TokenError::Encode {
            what: "key endorsement",
        })
}

/// A checked endorsement: who signed, and the key it endorses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endorsement {
    pub endorser_kid: String,
    pub endorsed: VerifyingKey,
}

/// Verify one endorsement against `trusted`: structure, headers (ES256, the
/// endorsement content type, a known `kid`), the endorsed COSE_Key (its
/// `kid` must be its thumbprint) and the signature.
pub fn verify_endorsement(bytes: &[u8], trusted: &KeySet) -> Result<Endorsement, TokenError> {
    let sign1 = envelope::parse(bytes)?;
    check_headers(&sign1)?;
    match &sign1.protected.content_type {
        Some(coset::RegisteredLabel::Text(t)) if t == ENDORSEMENT_CONTENT_TYPE => {}
        other => {
            return Err(TokenError::ContentTypeMismatch {
                expected: ENDORSEMENT_CONTENT_TYPE,
                actual: other.as_ref().map(|c| format!("{c:?}")),
            })
        }
    }
    let endorser_kid = kid_of(&sign1)?;
    let endorser = trusted
        .find(&endorser_kid)
        .ok_or_else(|| TokenError::UnknownKey {
            kid: endorser_kid.clone(),
        })?;
    let payload = sign1.payload.ok_or(TokenError::DetachedPayload)?;
    endorser.verify(
        &envelope::sig_structure(sign1.protected_bytes, payload),
        sign1.signature,
    )?;
    let endorsed = VerifyingKey::from_cose_key_bytes(payload)?;
    Ok(Endorsement {
        endorser_kid,
        endorsed,
    })
}

/// The keys of `served` that a holder of `pinned` may trust: those pinned,
/// and those reachable from a pinned key through `endorsements` (in any
/// order; at most [`MAX_ENDORSEMENTS`] are read; endorsements that do not
/// verify are skipped, since one bad entry must not hide a good chain).
/// A served key with a pinned `kid` must be the same key. Refuses when no
/// served key is trusted: the caller keeps its old pins and fails closed.
pub fn advance_pinned(
    pinned: &KeySet,
    served: &KeySet,
    endorsements: &[Vec<u8>],
) -> Result<KeySet, TokenError> {
    let mut trusted = pinned.clone();
    let considered = endorsements.get(..MAX_ENDORSEMENTS).unwrap_or(endorsements);
    loop {
        let mut grew = false;
        for e in considered {
            if let Ok(ok) = verify_endorsement(e, &trusted) {
                if trusted.find(&ok.endorsed.kid).is_none() {
                    trusted.keys.push(ok.endorsed);
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let keys: Vec<VerifyingKey> = served
        .keys
        .iter()
        .filter(|k| trusted.find(&k.kid) == Some(k))
        .cloned()
        .collect();
    if keys.is_empty() {
        return Err(TokenError::NoPinnedKey {
            pinned: pinned.keys.iter().map(|k| k.kid.clone()).collect(),
            served: served.keys.iter().map(|k| k.kid.clone()).collect(),
        });
    }
    KeySet::new(keys)
}

/// A CBOR array of byte strings, each one endorsement (what
/// `/v1/keys/endorsements` serves, `application/cbor`).
pub fn encode_endorsements(list: &[Vec<u8>]) -> Result<Vec<u8>, TokenError> {
    let items = list.iter().cloned().map(ciborium::Value::Bytes).collect();
    super::cbor::encode(&ciborium::Value::Array(items), "key endorsements")
}

/// Parse [`encode_endorsements`]'s output: no trailing bytes, at most
/// [`MAX_ENDORSEMENTS`] entries, each a byte string.
pub fn decode_endorsements(bytes: &[u8]) -> Result<Vec<Vec<u8>>, TokenError> {
    let not_a_list = TokenError::KeyField {
        format: "key endorsements",
        field: "(document)",
        expected: "array of byte strings",
    };
    let ciborium::Value::Array(items) = super::cbor::read_exact(bytes, "key endorsements")? else {
        return Err(not_a_list);
    };
    if items.len() > MAX_ENDORSEMENTS {
        return Err(TokenError::TooManyEndorsements {
            max: MAX_ENDORSEMENTS,
            actual: items.len(),
        });
    }
    items
        .into_iter()
        .map(|v| match v {
            ciborium::Value::Bytes(b) => Ok(b),
            _ => Err(not_a_list.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate().unwrap()
    }

    fn set(keys: &[&SigningKey]) -> KeySet {
        KeySet::new(keys.iter().map(|k| k.verifying_key()).collect()).unwrap()
    }

    #[test]
    fn a_chain_of_rotations_reaches_the_newest_key() {
        let (a, b, c) = (key(), key(), key());
        let ab = endorse(&a, &b.verifying_key()).unwrap();
        let bc = endorse(&b, &c.verifying_key()).unwrap();
        // Out of order on purpose.
        let got = advance_pinned(&set(&[&a]), &set(&[&c]), &[bc, ab]).unwrap();
        assert_eq!(got, set(&[&c]));
    }

    #[test]
    fn a_served_key_nobody_endorsed_is_refused() {
        let (a, evil) = (key(), key());
        let self_signed = endorse(&evil, &evil.verifying_key()).unwrap();
        let err = advance_pinned(&set(&[&a]), &set(&[&evil]), &[self_signed]).unwrap_err();
        assert!(matches!(err, TokenError::NoPinnedKey { .. }), "{err:?}");
    }

    #[test]
    fn served_keys_are_filtered_to_the_trusted_ones() {
        let (a, evil) = (key(), key());
        let got = advance_pinned(&set(&[&a]), &set(&[&a, &evil]), &[]).unwrap();
        assert_eq!(got, set(&[&a]));
    }

    #[test]
    fn a_token_is_not_an_endorsement() {
        let a = key();
        let b = key();
        // A COSE_Sign1 by a trusted key whose payload is a COSE_Key but
        // without the endorsement content type.
        let payload = b.verifying_key().to_cose_key_bytes().unwrap();
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .key_id(a.kid().into_bytes())
            .build();
        let plain = CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .try_create_signature(b"", |tbs| a.sign(tbs))
            .unwrap()
            .build()
            .to_tagged_vec()
            .unwrap();
        let err = verify_endorsement(&plain, &set(&[&a])).unwrap_err();
        assert!(
            matches!(err, TokenError::ContentTypeMismatch { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_tampered_endorsement_does_not_verify() {
        let (a, b, c) = (key(), key(), key());
        let mut e = endorse(&a, &b.verifying_key()).unwrap();
        // Swap the endorsed key for another one of the same length.
        let (bk, ck) = (
            b.verifying_key().to_cose_key_bytes().unwrap(),
            c.verifying_key().to_cose_key_bytes().unwrap(),
        );
        assert_eq!(bk.len(), ck.len());
        let at = e
            .windows(bk.len())
            .position(|w| w == bk.as_slice())
            .unwrap();
        e[at..at + bk.len()].copy_from_slice(&ck);
        let err = verify_endorsement(&e, &set(&[&a])).unwrap_err();
        assert!(matches!(err, TokenError::BadSignature), "{err:?}");
    }

    #[test]
    fn endorsement_lists_round_trip() {
        let (a, b) = (key(), key());
        let e = endorse(&a, &b.verifying_key()).unwrap();
        let list = encode_endorsements(std::slice::from_ref(&e)).unwrap();
        assert_eq!(decode_endorsements(&list).unwrap(), vec![e]);
        assert!(decode_endorsements(&[0x80, 0x00]).is_err());
    }
}
