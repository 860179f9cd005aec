//! Token Status Lists (draft-ietf-oauth-status-list) in their CWT form:
//! which tokens are revoked, published by the brokers and checked by
//! gates and attesters.
//!
//! A status list is a COSE_Sign1 (ES256, a broker token key) whose
//! protected header is `{1: -7, 4: kid, 16: "application/statuslist+cwt"}`
//! and whose payload is the CWT claims set
//!
//! ```text
//! { 2: tstr,            ; sub: the list's URI (a token's status/status_list/uri)
//!   4: int,             ; exp
//!   6: int,             ; iat
//!   65534: uint,        ; ttl: seconds before a relying party should refetch
//!   65533: { "bits": 1, ; status_list: bits per entry (1, 2, 4 or 8)
//!            "lst": bstr }  ; zlib DEFLATE of the LSB-first packed statuses
//!   -65542: uint }      ; Writ: the fleet's revocation counter when signed
//! ```
//!
//! A token points into one list with its `status` claim
//! (`65535: {"status_list": {"idx", "uri"}}`); entry 0 means VALID, any
//! other value refuses the token. A relying party that cannot obtain a list
//! younger than its maximum staleness must treat every token as
//! unverifiable.

mod array;
#[cfg(test)]
mod tests;

use ciborium::value::Value;

pub use array::{Bits, StatusArray, DEFAULT_MAX_DECOMPRESSED};

use crate::signed;
use crate::token::cbor::{self, as_bytes, as_i64, as_text, as_u64, int, required, IntMap};
use crate::token::{KeySet, SigningKey, StatusRef, TokenError};

/// `typ` of a status list CWT.
pub const TYP: &str = "application/statuslist+cwt";

/// Status values (draft-ietf-oauth-status-list, "Status Types").
pub const VALID: u8 = 0;
pub const INVALID: u8 = 1;
pub const SUSPENDED: u8 = 2;

/// Claim keys of a status list CWT.
pub mod label {
    pub const SUB: i64 = 2;
    pub const EXP: i64 = 4;
    pub const IAT: i64 = 6;
    pub const STATUS_LIST: i64 = 65533;
    pub const TTL: i64 = 65534;
    /// Writ-private: the fleet's revocation counter when the list was built.
    pub const WRIT_STATUS_VERSION: i64 = -65542;
}

/// Why a status list (or a token's entry in it) was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The envelope, header, key or signature was refused.
    #[error("status list: {0}")]
    Envelope(#[from] TokenError),
    #[error("status list: typ {actual:?}, expected {expected}")]
    Typ {
        expected: &'static str,
        actual: Option<String>,
    },
    #[error("status list: a content type ({actual}) where only typ is allowed")]
    ContentTypePresent { actual: String },
    #[error("status list: no kid in the protected header")]
    KidMissing,
    #[error("status list: bits {actual}, expected 1, 2, 4 or 8")]
    Bits { actual: u64 },
    #[error("status list: status {value} does not fit in {bits} bits")]
    StatusValue { value: u8, bits: u8 },
    #[error("status list: lst is not a zlib stream")]
    LstNotZlib,
    #[error("status list: lst ends before its zlib end marker")]
    LstTruncated,
    #[error("status list: lst decompresses to more than {max} bytes")]
    LstTooLarge { max: usize },
    #[error("status list: {count} bytes after lst's zlib stream")]
    LstTrailingBytes { count: usize },
    #[error("status list: compressing lst failed")]
    Compress,
    #[error("status list: index {idx} outside the list's {len} entries")]
    IndexOutOfRange { idx: u64, len: usize },
    #[error("status list: sub {actual}, the token refers to {expected}")]
    UriMismatch { expected: String, actual: String },
    #[error("status list: the token has no status claim")]
    TokenUnlisted,
    #[error("status list: expired at {expires_at}, now {now}")]
    Expired { expires_at: i64, now: i64 },
    #[error("status list: issued in the future at {issued_at}, now {now}")]
    IssuedInFuture { issued_at: i64, now: i64 },
    #[error("status list: exp {expires_at} is not after iat {issued_at}")]
    BadValidity { issued_at: i64, expires_at: i64 },
}

/// A (verified or to-be-signed) status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    /// `sub`: the list's URI.
    pub uri: String,
    /// Writ's revocation counter when the list was built.
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
    /// `ttl`, seconds.
    pub ttl: Option<u64>,
    pub statuses: StatusArray,
}

impl StatusList {
    /// The status of `token`'s entry: its `status` claim must name this
    /// list (`uri` = `sub`) and an index inside it.
    pub fn status_of(&self, token: Option<&StatusRef>) -> Result<u8, StatusError> {
        let r = token.ok_or(StatusError::TokenUnlisted)?;
        if r.uri != self.uri {
            return Err(StatusError::UriMismatch {
                expected: r.uri.clone(),
                actual: self.uri.clone(),
            });
        }
        self.statuses.get(r.idx)
    }

    /// The payload as deterministic CBOR.
    pub fn to_cbor_bytes(&self) -> Result<Vec<u8>, StatusError> {
        use label::*;
        let status_list = cbor::canonical_map(
            vec![
                (
                    Value::Text("bits".into()),
                    int(i64::from(self.statuses.bits().get())),
                ),
                (
                    Value::Text("lst".into()),
                    Value::Bytes(self.statuses.compress()?),
                ),
            ],
            "status_list",
        )?;
        let mut m = vec![
            (int(SUB), Value::Text(self.uri.clone())),
            (int(EXP), int(self.expires_at)),
            (int(IAT), int(self.issued_at)),
            (int(STATUS_LIST), status_list),
            (
                int(WRIT_STATUS_VERSION),
                Value::Integer(self.version.into()),
            ),
        ];
        if let Some(ttl) = self.ttl {
            m.push((int(TTL), Value::Integer(ttl.into())));
        }
        let map = cbor::canonical_map(m, "status list")?;
        Ok(cbor::encode(&map, "status list")?)
    }

    /// Decode a payload (structure and `lst` only: no signature, no time
    /// checks); `lst` may decompress to at most `max_bytes`.
    pub fn from_cbor_bytes(bytes: &[u8], max_bytes: usize) -> Result<Self, StatusError> {
        use label::*;
        let mut m = IntMap::from_value(cbor::read_exact(bytes, "status list")?, "status list")?;
        let uri = as_text(required(m.take(SUB), "status/sub")?, "status/sub")?;
        let issued_at = as_i64(required(m.take(IAT), "status/iat")?, "status/iat")?;
        let expires_at = as_i64(required(m.take(EXP), "status/exp")?, "status/exp")?;
        let ttl = m.take(TTL).map(|v| as_u64(v, "status/ttl")).transpose()?;
        let version = m
            .take(WRIT_STATUS_VERSION)
            .map(|v| as_u64(v, "status/writ.version"))
            .transpose()?
            .unwrap_or(0);
        let list = required(m.take(STATUS_LIST), "status/status_list")?;
        let (mut bits, mut lst) = (None, None);
        for (k, v) in cbor::text_map(list, "status/status_list")? {
            match k.as_str() {
                "bits" => bits = Some(as_u64(v, "status/status_list/bits")?),
                "lst" => lst = Some(as_bytes(v, "status/status_list/lst")?),
                // aggregation_uri and future members are not used here.
                _ => {}
            }
        }
        let bits = Bits::from_u64(bits.ok_or(TokenError::ClaimMissing {
            claim: "status/status_list/bits",
        })?)?;
        let lst = lst.ok_or(TokenError::ClaimMissing {
            claim: "status/status_list/lst",
        })?;
        if expires_at <= issued_at {
            return Err(StatusError::BadValidity {
                issued_at,
                expires_at,
            });
        }
        Ok(StatusList {
            uri,
            version,
            issued_at,
            expires_at,
            ttl,
            statuses: StatusArray::decompress(bits, &lst, max_bytes)?,
        })
    }

    /// Sign the list with a broker token key.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, StatusError> {
        Ok(signed::seal_typed(self.to_cbor_bytes()?, key, TYP)?)
    }
}

/// How a relying party checks a signed status list.
#[derive(Debug, Clone, Copy)]
pub struct ListCheck {
    pub now: i64,
    /// Clock skew tolerated on `iat` / `exp`.
    pub leeway_secs: i64,
    /// Largest decompressed `lst` accepted.
    pub max_decompressed: usize,
}

impl ListCheck {
    /// At `now`, with `leeway_secs`, and the default decompression cap.
    pub fn at(now: i64, leeway_secs: i64) -> Self {
        ListCheck {
            now,
            leeway_secs,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

/// Verify a signed status list: envelope, `typ`, `kid` in `keys`,
/// signature, claims, `lst`, and validity at `check.now` (± leeway).
pub fn verify(bytes: &[u8], keys: &KeySet, check: ListCheck) -> Result<StatusList, StatusError> {
    let (opened, marks) = signed::open_typed(bytes)?;
    if let Some(actual) = marks.content_type {
        return Err(StatusError::ContentTypePresent { actual });
    }
    if marks.typ.as_deref() != Some(TYP) {
        return Err(StatusError::Typ {
            expected: TYP,
            actual: marks.typ,
        });
    }
    let kid = opened.kid.as_deref().ok_or(StatusError::KidMissing)?;
    let key = keys.find(kid).ok_or_else(|| TokenError::UnknownKey {
        kid: kid.to_owned(),
    })?;
    // The signature first: nothing unauthenticated is decompressed.
    opened.verify_with(key)?;
    let list = StatusList::from_cbor_bytes(opened.payload, check.max_decompressed)?;
    let (now, leeway) = (check.now, check.leeway_secs.max(0));
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

/// [`verify`], and the list must be the one at `uri`.
pub fn verify_at(
    bytes: &[u8],
    keys: &KeySet,
    uri: &str,
    check: ListCheck,
) -> Result<StatusList, StatusError> {
    let list = verify(bytes, keys, check)?;
    if list.uri != uri {
        return Err(StatusError::UriMismatch {
            expected: uri.to_owned(),
            actual: list.uri,
        });
    }
    Ok(list)
}
