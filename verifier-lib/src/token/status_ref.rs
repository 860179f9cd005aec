//! The referenced-token `status` claim of draft-ietf-oauth-status-list:
//! `65535: {"status_list": {"idx": uint, "uri": tstr}}` — where this token's
//! entry lives in a Token Status List.

use ciborium::value::Value;
use serde::{Deserialize, Serialize};

use super::cbor::{self, as_text, as_u64, text_map};
use super::TokenError;

/// Longest accepted status-list URI.
pub const STATUS_URI_MAX_LEN: usize = 2048;

/// A token's entry in a status list (the `status_list` member of `status`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StatusRef {
    /// Index of the token's status in the list.
    pub idx: u64,
    /// The list's URI: it equals the list's `sub` claim.
    pub uri: String,
}

impl StatusRef {
    pub(crate) fn check(&self) -> Result<(), TokenError> {
        if self.uri.is_empty() || self.uri.len() > STATUS_URI_MAX_LEN {
            return Err(TokenError::ClaimType {
                claim: "status/status_list/uri".into(),
                expected: "non-empty text of at most 2048 bytes",
            });
        }
        Ok(())
    }

    pub(crate) fn to_value(&self) -> Result<Value, TokenError> {
        self.check()?;
        let inner = cbor::canonical_map(
            vec![
                (Value::Text("idx".into()), Value::Integer(self.idx.into())),
                (Value::Text("uri".into()), Value::Text(self.uri.clone())),
            ],
            "status/status_list",
        )?;
        cbor::canonical_map(vec![(Value::Text("status_list".into()), inner)], "status")
    }

    /// Decode the `status` claim. Other status mechanisms may sit next to
    /// `status_list` and are ignored; `status_list` itself is required and
    /// strict (exactly `idx` and `uri`).
    pub(crate) fn from_value(value: Value) -> Result<Self, TokenError> {
        let mut list = None;
        for (k, v) in text_map(value, "status")? {
            if k == "status_list" {
                list = Some(v);
            }
        }
        let list = list.ok_or(TokenError::ClaimMissing {
            claim: "status/status_list",
        })?;
        let (mut idx, mut uri) = (None, None);
        for (k, v) in text_map(list, "status/status_list")? {
            match k.as_str() {
                "idx" => idx = Some(as_u64(v, "status/status_list/idx")?),
                "uri" => uri = Some(as_text(v, "status/status_list/uri")?),
                _ => {
                    return Err(TokenError::ClaimType {
                        claim: format!("status/status_list/{k}"),
                        expected: "only idx and uri",
                    })
                }
            }
        }
        let r = StatusRef {
            idx: idx.ok_or(TokenError::ClaimMissing {
                claim: "status/status_list/idx",
            })?,
            uri: uri.ok_or(TokenError::ClaimMissing {
                claim: "status/status_list/uri",
            })?,
        };
        r.check()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let r = StatusRef {
            idx: 1_048_575,
            uri: "https://writ.example/v1/status/lists/3".into(),
        };
        let v = r.to_value().unwrap();
        let bytes = cbor::encode(&v, "t").unwrap();
        // {"status_list": {"idx": 1048575, "uri": ...}}: text keys, canonical.
        assert_eq!(&bytes[..13], b"\xa1\x6bstatus_list");
        assert_eq!(StatusRef::from_value(v).unwrap(), r);

        let extra = Value::Map(vec![(
            Value::Text("status_list".into()),
            Value::Map(vec![
                (Value::Text("idx".into()), Value::Integer(1.into())),
                (Value::Text("uri".into()), Value::Text("u".into())),
                (Value::Text("x".into()), Value::Integer(1.into())),
            ]),
        )]);
        assert!(matches!(
            StatusRef::from_value(extra),
            Err(TokenError::ClaimType { .. })
        ));
        let missing = Value::Map(vec![(Value::Text("other".into()), Value::Null)]);
        assert_eq!(
            StatusRef::from_value(missing),
            Err(TokenError::ClaimMissing {
                claim: "status/status_list"
            })
        );
        let negative = Value::Map(vec![(
            Value::Text("status_list".into()),
            Value::Map(vec![
                (Value::Text("idx".into()), Value::Integer((-1).into())),
                (Value::Text("uri".into()), Value::Text("u".into())),
            ]),
        )]);
        assert!(StatusRef::from_value(negative).is_err());
    }
}
