//! CBOR plumbing shared by the token modules: exact reads (no trailing bytes),
//! deterministic maps (RFC 8949 §4.2.1 key order) and typed field access whose
//! errors name the claim.

use std::collections::{BTreeMap, BTreeSet};

use ciborium::value::Value;

use super::TokenError;

/// Decode exactly one CBOR item from `bytes`; anything after it is an error.
pub(crate) fn read_exact(bytes: &[u8], what: &'static str) -> Result<Value, TokenError> {
    let mut rest = bytes;
    let value: Value =
        ciborium::de::from_reader(&mut rest).map_err(|_| TokenError::Cbor { what })?;
    if !rest.is_empty() {
        return Err(TokenError::TrailingBytes {
            what,
            count: rest.len(),
        });
    }
    Ok(value)
}

/// Encode a value. ciborium writes definite lengths and shortest-form
/// integers, so with [`canonical_map`] the output is RFC 8949 deterministic.
pub(crate) fn encode(value: &Value, what: &'static str) -> Result<Vec<u8>, TokenError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|_| TokenError::Encode { what })?;
    Ok(out)
}

/// Build a map whose entries are sorted by the bytewise order of their encoded
/// keys (RFC 8949 §4.2.1). Duplicate keys are an error.
pub(crate) fn canonical_map(
    entries: Vec<(Value, Value)>,
    what: &'static str,
) -> Result<Value, TokenError> {
    let mut keyed = entries
        .into_iter()
        .map(|(k, v)| Ok((encode(&k, what)?, k, v)))
        .collect::<Result<Vec<_>, TokenError>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if keyed.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
        return Err(TokenError::Encode { what });
    }
    Ok(Value::Map(
        keyed.into_iter().map(|(_, k, v)| (k, v)).collect(),
    ))
}

/// Re-sort an existing map value (e.g. one coset produced) into canonical order.
pub(crate) fn canonicalize(value: Value, what: &'static str) -> Result<Value, TokenError> {
    match value {
        Value::Map(entries) => canonical_map(entries, what),
        other => Ok(other),
    }
}

pub(crate) fn int(value: i64) -> Value {
    Value::Integer(value.into())
}

/// The integer-keyed entries of a map, with every key checked for duplicates.
/// Keys that are text are checked for duplicates and then dropped (no Writ
/// claim uses a text key); keys of any other type are rejected.
pub(crate) struct IntMap {
    entries: BTreeMap<i64, Value>,
}

impl IntMap {
    pub(crate) fn from_value(value: Value, what: &str) -> Result<Self, TokenError> {
        let Value::Map(pairs) = value else {
            return Err(TokenError::ClaimType {
                claim: what.to_string(),
                expected: "map",
            });
        };
        let mut entries = BTreeMap::new();
        let mut texts = BTreeSet::new();
        let mut wide = BTreeSet::new();
        for (k, v) in pairs {
            match k {
                Value::Integer(i) => {
                    let wide_key = i128::from(i);
                    match i64::try_from(wide_key) {
                        Ok(key) => {
                            if entries.insert(key, v).is_some() {
                                return Err(TokenError::DuplicateClaim {
                                    claim: format!("{what}/{key}"),
                                });
                            }
                        }
                        // Outside i64: no Writ claim lives there; ignore, but police duplicates.
                        Err(_) => {
                            if !wide.insert(wide_key) {
                                return Err(TokenError::DuplicateClaim {
                                    claim: format!("{what}/{wide_key}"),
                                });
                            }
                        }
                    }
                }
                Value::Text(t) => {
                    if !texts.insert(t.clone()) {
                        return Err(TokenError::DuplicateClaim {
                            claim: format!("{what}/{t:?}"),
                        });
                    }
                }
                _ => {
                    return Err(TokenError::ClaimType {
                        claim: format!("{what} key"),
                        expected: "integer or text map key",
                    })
                }
            }
        }
        Ok(IntMap { entries })
    }

    pub(crate) fn take(&mut self, label: i64) -> Option<Value> {
        self.entries.remove(&label)
    }
}

/// Decode a map whose keys must all be text, rejecting duplicates.
pub(crate) fn text_map(value: Value, what: &str) -> Result<Vec<(String, Value)>, TokenError> {
    let Value::Map(pairs) = value else {
        return Err(TokenError::ClaimType {
            claim: what.to_string(),
            expected: "map with text keys",
        });
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let Value::Text(key) = k else {
            return Err(TokenError::ClaimType {
                claim: format!("{what} key"),
                expected: "text map key",
            });
        };
        if !seen.insert(key.clone()) {
            return Err(TokenError::DuplicateClaim {
                claim: format!("{what}/{key}"),
            });
        }
        out.push((key, v));
    }
    Ok(out)
}

pub(crate) fn required(value: Option<Value>, claim: &'static str) -> Result<Value, TokenError> {
    value.ok_or(TokenError::ClaimMissing { claim })
}

pub(crate) fn as_text(value: Value, claim: &str) -> Result<String, TokenError> {
    match value {
        Value::Text(t) => Ok(t),
        _ => Err(TokenError::ClaimType {
            claim: claim.to_string(),
            expected: "text string",
        }),
    }
}

pub(crate) fn as_bytes(value: Value, claim: &str) -> Result<Vec<u8>, TokenError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(TokenError::ClaimType {
            claim: claim.to_string(),
            expected: "byte string",
        }),
    }
}

pub(crate) fn as_i64(value: Value, claim: &str) -> Result<i64, TokenError> {
    match value {
        Value::Integer(i) => i64::try_from(i).map_err(|_| TokenError::ClaimType {
            claim: claim.to_string(),
            expected: "integer in i64 range",
        }),
        _ => Err(TokenError::ClaimType {
            claim: claim.to_string(),
            expected: "integer",
        }),
    }
}

pub(crate) fn as_u64(value: Value, claim: &str) -> Result<u64, TokenError> {
    match value {
        Value::Integer(i) => u64::try_from(i).map_err(|_| TokenError::ClaimType {
            claim: claim.to_string(),
            expected: "unsigned integer",
        }),
        _ => Err(TokenError::ClaimType {
            claim: claim.to_string(),
            expected: "unsigned integer",
        }),
    }
}

/// A byte string of exactly `len` bytes.
pub(crate) fn as_fixed_bytes(
    value: Value,
    claim: &'static str,
    len: usize,
) -> Result<Vec<u8>, TokenError> {
    let b = as_bytes(value, claim)?;
    if b.len() != len {
        return Err(TokenError::ClaimLength {
            claim,
            expected: len,
            actual: b.len(),
        });
    }
    Ok(b)
}
