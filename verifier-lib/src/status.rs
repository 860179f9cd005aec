//! Signed, versioned token status lists: which unexpired tokens are revoked.
//!
//! A status list is a COSE_Sign1 (ES256, the broker's token key, protected
//! header `{1: -7, 3: "application/writ-status+cbor", 4: kid}`) whose payload
//! is the deterministic CBOR map
//!
//! ```text
//! { 0: "tag:writ.dev,2026:status/v1",   ; format
//!   1: tstr,                            ; iss (the token issuer)
//!   2: uint,                            ; version (grows with every revocation)
//!   3: int,                             ; issued_at (Unix seconds)
//!   4: int,                             ; expires_at (Unix seconds)
//!   5: bstr }                           ; revoked ctis: 16-byte ids, concatenated,
//!                                       ; strictly ascending
//! ```
//!
//! The cti field is one byte string of 16 × N bytes (no per-entry framing):
//! 100 000 revoked tokens are 1.6 MB, and a lookup is a binary search over the
//! sorted ids. Only unexpired tokens are listed, so the list shrinks as
//! revoked tokens expire. A relying party that cannot obtain a list younger
//! than its maximum staleness must treat every token as unverifiable.

use ciborium::value::Value;

use crate::signed::{self, OpenError};
use crate::token::cbor::{self, as_bytes, as_i64, as_text, as_u64, int, required, IntMap};
use crate::token::{KeySet, SigningKey, TokenError, CTI_LEN};

/// Content type of a signed status list.
pub const CONTENT_TYPE: &str = "application/writ-status+cbor";
/// The payload's format marker.
pub const FORMAT: &str = "tag:writ.dev,2026:status/v1";

/// A token id.
pub type Cti = [u8; CTI_LEN];

/// Why a status list was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The envelope, header, key or signature was refused.
    #[error("status list: {0}")]
    Envelope(#[from] TokenError),
    #[error("status list: content type {actual:?}, expected {expected}")]
    ContentType {
        expected: &'static str,
        actual: Option<String>,
    },
    #[error("status list: no kid in the protected header")]
    KidMissing,
    #[error("status list: format {actual:?}, expected {expected}")]
    Format {
        expected: &'static str,
        actual: String,
    },
    #[error("status list: issuer {actual}, expected {expected}")]
    IssuerMismatch { expected: String, actual: String },
    #[error("status list: expired at {expires_at}, now {now}")]
    Expired { expires_at: i64, now: i64 },
    #[error("status list: issued in the future at {issued_at}, now {now}")]
    IssuedInFuture { issued_at: i64, now: i64 },
    #[error("status list: expires_at {expires_at} is not after issued_at {issued_at}")]
    BadValidity { issued_at: i64, expires_at: i64 },
    #[error("status list: revoked ids are {len} bytes, not a multiple of {CTI_LEN}")]
    IdsLength { len: usize },
    #[error("status list: revoked id {index} is not above the previous one (must be strictly ascending)")]
    IdsNotAscending { index: usize },
}

impl From<OpenError> for StatusError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Envelope(t) => StatusError::Envelope(t),
            OpenError::ContentType { expected, actual } => {
                StatusError::ContentType { expected, actual }
            }
        }
    }
}

/// A (verified or to-be-signed) status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    pub issuer: String,
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
    revoked: Vec<Cti>,
}

impl StatusList {
    /// A list of `revoked` ids (sorted and de-duplicated here).
    pub fn new(
        issuer: impl Into<String>,
        version: u64,
        issued_at: i64,
        expires_at: i64,
        revoked: impl IntoIterator<Item = Cti>,
    ) -> Self {
        let mut revoked: Vec<Cti> = revoked.into_iter().collect();
        revoked.sort_unstable();
        revoked.dedup();
        StatusList {
            issuer: issuer.into(),
            version,
            issued_at,
            expires_at,
            revoked,
        }
    }

    /// Whether the token `cti` is revoked (binary search).
    pub fn is_revoked(&self, cti: &[u8]) -> bool {
        let Ok(id) = <Cti>::try_from(cti) else {
            // Not a Writ cti: it cannot be listed; callers verify ctis anyway.
            return false;
        };
        self.revoked.binary_search(&id).is_ok()
    }

    /// The revoked ids, ascending.
    pub fn revoked(&self) -> &[Cti] {
        &self.revoked
    }

    /// The payload as deterministic CBOR.
    pub fn to_cbor_bytes(&self) -> Result<Vec<u8>, StatusError> {
        let ids: Vec<u8> = self.revoked.iter().flatten().copied().collect();
        let version = i64::try_from(self.version).map_err(|_| TokenError::Encode {
            what: "status version",
        })?;
        let map = cbor::canonical_map(
            vec![
                (int(0), Value::Text(FORMAT.to_owned())),
                (int(1), Value::Text(self.issuer.clone())),
                (int(2), int(version)),
                (int(3), int(self.issued_at)),
                (int(4), int(self.expires_at)),
                (int(5), Value::Bytes(ids)),
            ],
            "status list",
        )?;
        Ok(cbor::encode(&map, "status list")?)
    }

    /// Decode a payload (structure only: no signature, no time checks).
    pub fn from_cbor_bytes(bytes: &[u8]) -> Result<Self, StatusError> {
        let mut m = IntMap::from_value(cbor::read_exact(bytes, "status list")?, "status list")?;
        let format = as_text(required(m.take(0), "status/format")?, "status/format")?;
        if format != FORMAT {
            return Err(StatusError::Format {
                expected: FORMAT,
                actual: format,
            });
        }
        let issuer = as_text(required(m.take(1), "status/iss")?, "status/iss")?;
        let version = as_u64(required(m.take(2), "status/version")?, "status/version")?;
        let issued_at = as_i64(required(m.take(3), "status/issued_at")?, "status/issued_at")?;
        let expires_at = as_i64(
            required(m.take(4), "status/expires_at")?,
            "status/expires_at",
        )?;
        let ids = as_bytes(required(m.take(5), "status/revoked")?, "status/revoked")?;
        if ids.len() % CTI_LEN != 0 {
            return Err(StatusError::IdsLength { len: ids.len() });
        }
        let mut revoked = Vec::with_capacity(ids.len() / CTI_LEN);
        for (index, chunk) in ids.chunks_exact(CTI_LEN).enumerate() {
            let mut id = [0u8; CTI_LEN];
            id.copy_from_slice(chunk);
            if revoked.last().is_some_and(|prev: &Cti| *prev >= id) {
                return Err(StatusError::IdsNotAscending { index });
            }
            revoked.push(id);
        }
        if expires_at <= issued_at {
            return Err(StatusError::BadValidity {
                issued_at,
                expires_at,
            });
        }
        Ok(StatusList {
            issuer,
            version,
            issued_at,
            expires_at,
            revoked,
        })
    }

    /// Sign the list with the broker's token key.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, StatusError> {
        Ok(signed::seal(
            self.to_cbor_bytes()?,
            key,
            CONTENT_TYPE,
            true,
        )?)
    }
}

/// Verify a signed status list: envelope and content type, `kid` in `keys`,
/// signature, format, `issuer`, and validity at `now` (± `leeway_secs`).
pub fn verify(
    bytes: &[u8],
    keys: &KeySet,
    issuer: &str,
    now: i64,
    leeway_secs: i64,
) -> Result<StatusList, StatusError> {
    let opened = signed::open(bytes, CONTENT_TYPE)?;
    let kid = opened.kid.as_deref().ok_or(StatusError::KidMissing)?;
    let key = keys.find(kid).ok_or_else(|| TokenError::UnknownKey {
        kid: kid.to_owned(),
    })?;
    let list = StatusList::from_cbor_bytes(opened.payload)?;
    opened.verify_with(key)?;
    if list.issuer != issuer {
        return Err(StatusError::IssuerMismatch {
            expected: issuer.to_owned(),
            actual: list.issuer,
        });
    }
    let leeway = leeway_secs.max(0);
    if now >= list.expires_at.saturating_add(leeway) {
        return Err(StatusError::Expired {
            expires_at: list.expires_at,
            now,
        });
    }
    if now.saturating_add(leeway) < list.issued_at {
        return Err(StatusError::IssuedInFuture {
            issued_at: list.issued_at,
            now,
        });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (SigningKey, KeySet) {
        let k = SigningKey::generate().unwrap();
        let set = KeySet::new(vec![k.verifying_key()]).unwrap();
        (k, set)
    }

    #[test]
    fn round_trip_and_lookup() {
        let (k, set) = keys();
        let list = StatusList::new(
            "writ-broker",
            7,
            100,
            400,
            [[3u8; 16], [1u8; 16], [3u8; 16]],
        );
        assert_eq!(list.revoked(), &[[1u8; 16], [3u8; 16]]);
        let signed = list.sign(&k).unwrap();
        let back = verify(&signed, &set, "writ-broker", 200, 0).unwrap();
        assert_eq!(back, list);
        assert!(back.is_revoked(&[3u8; 16]));
        assert!(!back.is_revoked(&[2u8; 16]));
        assert!(!back.is_revoked(&[3u8; 15]));
    }

    #[test]
    fn refuses_expired_wrong_issuer_wrong_key_and_tampering() {
        let (k, set) = keys();
        let signed = StatusList::new("writ-broker", 1, 100, 400, [[9u8; 16]])
            .sign(&k)
            .unwrap();
        assert_eq!(
            verify(&signed, &set, "writ-broker", 400, 0),
            Err(StatusError::Expired {
                expires_at: 400,
                now: 400
            })
        );
        assert!(matches!(
            verify(&signed, &set, "other", 200, 0),
            Err(StatusError::IssuerMismatch { .. })
        ));
        let (_, other) = keys();
        assert!(matches!(
            verify(&signed, &other, "writ-broker", 200, 0),
            Err(StatusError::Envelope(TokenError::UnknownKey { .. }))
        ));
        // Flip a byte of the revoked id inside the payload.
        let mut bad = signed.clone();
        let pos = bad.windows(16).position(|w| w == [9u8; 16]).unwrap();
        bad[pos] = 8;
        assert_eq!(
            verify(&bad, &set, "writ-broker", 200, 0),
            Err(StatusError::Envelope(TokenError::BadSignature))
        );
    }

    #[test]
    fn a_token_is_not_a_status_list() {
        let (k, set) = keys();
        let token = crate::signed::seal(vec![0xa0], &k, "application/cwt", true).unwrap();
        assert!(matches!(
            verify(&token, &set, "writ-broker", 200, 0),
            Err(StatusError::ContentType { .. })
        ));
    }

    #[test]
    fn unsorted_or_ragged_ids_are_refused() {
        let enc = |ids: Vec<u8>| {
            let map = cbor::canonical_map(
                vec![
                    (int(0), Value::Text(FORMAT.to_owned())),
                    (int(1), Value::Text("i".into())),
                    (int(2), int(1)),
                    (int(3), int(1)),
                    (int(4), int(2)),
                    (int(5), Value::Bytes(ids)),
                ],
                "t",
            )
            .unwrap();
            cbor::encode(&map, "t").unwrap()
        };
        let mut two = vec![2u8; 16];
        two.extend([1u8; 16]);
        assert_eq!(
            StatusList::from_cbor_bytes(&enc(two)),
            Err(StatusError::IdsNotAscending { index: 1 })
        );
        assert_eq!(
            StatusList::from_cbor_bytes(&enc(vec![1u8; 17])),
            Err(StatusError::IdsLength { len: 17 })
        );
    }
}
