//! CBOR plumbing shared by the token modules: exact reads (no trailing bytes),
//! deterministic maps (RFC 8949 §4.2.1 key order) and typed field access whose
//! errors name the claim.

use std::collections::BTreeSet;

use ciborium::value::{Integer, Value};

use super::TokenError;

/// Deepest nesting of arrays, maps and tags accepted.
const MAX_DEPTH: usize = 16;

/// Decode exactly one CBOR item from `bytes`; anything after it is an error.
///
/// A small strict decoder, several times faster than ciborium's serde path:
/// definite lengths only (RFC 8949 §4.2.1 deterministic encoding forbids
/// indefinite ones, and Writ always writes definite lengths), UTF-8 text,
/// simple values limited to false/true/null, nesting limited to 16 levels.
pub(crate) fn read_exact(bytes: &[u8], what: &'static str) -> Result<Value, TokenError> {
    let mut dec = Decoder::new(bytes);
    let value = dec.value().ok_or(TokenError::Cbor { what })?;
    if !dec.rest.is_empty() {
        return Err(TokenError::TrailingBytes {
            what,
            count: dec.rest.len(),
        });
    }
    Ok(value)
}

/// A strict, zero-copy CBOR pull decoder (see [`read_exact`] for its rules).
pub(crate) struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Decoder { rest: bytes }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next initial byte, not consumed.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// If the next item is a tag, consume its head and return the tag number.
    pub(crate) fn tag(&mut self) -> Option<u64> {
        let initial = self.peek()?;
        if initial >> 5 != 6 {
            return None;
        }
        let saved = self.rest;
        self.byte()?;
        let tag = self.argument(initial & 0x1f);
        if tag.is_none() {
            self.rest = saved;
        }
        tag
    }

    /// The head of a definite-length array; its element count.
    pub(crate) fn array_len(&mut self) -> Option<usize> {
        let initial = self.byte()?;
        if initial >> 5 != 4 {
            return None;
        }
        self.length(initial & 0x1f)
    }

    /// A definite-length byte string, borrowed.
    pub(crate) fn bstr(&mut self) -> Option<&'a [u8]> {
        let initial = self.byte()?;
        if initial >> 5 != 2 {
            return None;
        }
        let n = self.length(initial & 0x1f)?;
        self.take(n)
    }

    /// Any one item, as a value.
    pub(crate) fn value(&mut self) -> Option<Value> {
        self.item(0)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn uint(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    }

    /// The argument of a head with additional information `ai` (definite only).
    fn argument(&mut self, ai: u8) -> Option<u64> {
        match ai {
            0..=23 => Some(u64::from(ai)),
            24 => self.uint(1),
            25 => self.uint(2),
            26 => self.uint(4),
            27 => self.uint(8),
            _ => None,
        }
    }

    /// A length that cannot exceed the bytes left (each element takes ≥ 1 byte).
    fn length(&mut self, ai: u8) -> Option<usize> {
        let n = usize::try_from(self.argument(ai)?).ok()?;
        (n <= self.rest.len()).then_some(n)
    }

    fn item(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        let initial = self.byte()?;
        let (major, ai) = (initial >> 5, initial & 0x1f);
        match major {
            0 => Some(Value::Integer(self.argument(ai)?.into())),
            1 => {
                let n = i128::from(self.argument(ai)?);
                Integer::try_from(-1 - n).ok().map(Value::Integer)
            }
            2 => {
                let n = self.length(ai)?;
                Some(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => {
                let n = self.length(ai)?;
                let text = std::str::from_utf8(self.take(n)?).ok()?;
                Some(Value::Text(text.to_string()))
            }
            4 => {
                let n = self.length(ai)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Some(Value::Array(items))
            }
            5 => {
                let n = self.length(ai)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Some(Value::Map(entries))
            }
            6 => {
                let tag = self.argument(ai)?;
                Some(Value::Tag(tag, Box::new(self.item(depth + 1)?)))
            }
            _ => match ai {
                20 => Some(Value::Bool(false)),
                21 => Some(Value::Bool(true)),
                22 => Some(Value::Null),
                25 => Some(Value::Float(f16_to_f64(u16::try_from(self.uint(2)?).ok()?))),
                26 => Some(Value::Float(f64::from(f32::from_bits(
                    u32::try_from(self.uint(4)?).ok()?,
                )))),
                27 => Some(Value::Float(f64::from_bits(self.uint(8)?))),
                _ => None,
            },
        }
    }
}

/// IEEE 754 binary16 to f64 (RFC 8949 Appendix D).
fn f16_to_f64(half: u16) -> f64 {
    let exp = (half >> 10) & 0x1f;
    let mant = f64::from(half & 0x3ff);
    let magnitude = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (mant + 1024.0) * 2f64.powi(i32::from(e) - 25),
    };
    if half & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    }
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
    /// Sorted by key, unique; `None` once taken.
    entries: Vec<(i64, Option<Value>)>,
}

impl IntMap {
    pub(crate) fn from_value(value: Value, what: &str) -> Result<Self, TokenError> {
        let Value::Map(pairs) = value else {
            return Err(TokenError::ClaimType {
                claim: what.to_string(),
                expected: "map",
            });
        };
        let mut entries = Vec::with_capacity(pairs.len());
        let mut texts = BTreeSet::new();
        let mut wide = BTreeSet::new();
        for (k, v) in pairs {
            match k {
                Value::Integer(i) => {
                    let wide_key = i128::from(i);
                    match i64::try_from(wide_key) {
                        Ok(key) => entries.push((key, Some(v))),
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
        entries.sort_unstable_by_key(|(k, _)| *k);
        if let Some(dup) = entries.windows(2).find_map(|w| match w {
            [(a, _), (b, _)] if a == b => Some(*a),
            _ => None,
        }) {
            return Err(TokenError::DuplicateClaim {
                claim: format!("{what}/{dup}"),
            });
        }
        Ok(IntMap { entries })
    }

    pub(crate) fn take(&mut self, label: i64) -> Option<Value> {
        let i = self
            .entries
            .binary_search_by_key(&label, |(k, _)| *k)
            .ok()?;
        self.entries.get_mut(i)?.1.take()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ciborium_bytes(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn decodes_what_ciborium_encodes() {
        let values = vec![
            Value::Integer(0.into()),
            Value::Integer(23.into()),
            Value::Integer(24.into()),
            Value::Integer(u64::MAX.into()),
            Value::Integer((-1).into()),
            Value::Integer(i64::MIN.into()),
            Value::Integer(Integer::try_from(-(1i128 << 64)).unwrap()),
            Value::Bytes(vec![]),
            Value::Bytes(vec![7; 300]),
            Value::Text("Signature1 ✓".into()),
            Value::Bool(true),
            Value::Bool(false),
            Value::Null,
            Value::Float(1.5),
            Value::Float(1.8e9),
            Value::Float(0.1),
            Value::Float(-65504.0),
            Value::Tag(18, Box::new(Value::Array(vec![Value::Null]))),
            Value::Map(vec![
                (Value::Integer((-65537).into()), Value::Array(vec![])),
                (Value::Text("k".into()), Value::Map(vec![])),
            ]),
        ];
        for v in values {
            let bytes = ciborium_bytes(&v);
            assert_eq!(read_exact(&bytes, "t").unwrap(), v, "{bytes:02x?}");
        }
    }

    #[test]
    fn half_floats_decode_per_rfc8949_appendix_d() {
        for (bytes, want) in [
            ([0xf9, 0x3c, 0x00], 1.0),
            ([0xf9, 0x7b, 0xff], 65504.0),
            ([0xf9, 0x00, 0x01], 5.960_464_477_539_063e-8),
            ([0xf9, 0xc4, 0x00], -4.0),
            ([0xf9, 0x7c, 0x00], f64::INFINITY),
        ] {
            assert_eq!(read_exact(&bytes, "t").unwrap(), Value::Float(want));
        }
        assert!(matches!(read_exact(&[0xf9, 0x7e, 0x00], "t"), Ok(Value::Float(f)) if f.is_nan()));
    }

    #[test]
    fn rejects_what_is_not_strict_cbor() {
        for bad in [
            &[][..],
            &[0x5f, 0x41, 0x00, 0xff], // indefinite-length byte string
            &[0x9f, 0xff],             // indefinite-length array
            &[0xbf, 0xff],             // indefinite-length map
            &[0xff],                   // break outside anything
            &[0x1c],                   // reserved additional information
            &[0xf8, 0x20],             // simple value 32
            &[0xf7],                   // undefined
            &[0x62, 0xc3, 0x28],       // invalid UTF-8
            &[0x5a, 0xff, 0xff, 0xff, 0xff], // length beyond input
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x18], // truncated argument
        ] {
            assert_eq!(
                read_exact(bad, "t"),
                Err(TokenError::Cbor { what: "t" }),
                "{bad:02x?}"
            );
        }
        assert_eq!(
            read_exact(&[0x01, 0x02], "t"),
            Err(TokenError::TrailingBytes {
                what: "t",
                count: 1
            })
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = [vec![0x81; MAX_DEPTH], vec![0x00]].concat();
        assert!(read_exact(&ok, "t").is_ok());
        let deep = [vec![0x81; MAX_DEPTH + 1], vec![0x00]].concat();
        assert_eq!(read_exact(&deep, "t"), Err(TokenError::Cbor { what: "t" }));
        let tags = [vec![0xc1; 10_000], vec![0x00]].concat();
        assert_eq!(read_exact(&tags, "t"), Err(TokenError::Cbor { what: "t" }));
    }

    #[test]
    fn canonical_map_sorts_by_encoded_key_and_rejects_duplicates() {
        let m = canonical_map(
            vec![
                (int(-65537), Value::Null),
                (Value::Text("b".into()), Value::Null),
                (int(1000), Value::Null),
                (int(-1), Value::Null),
                (int(24), Value::Null),
                (int(1), Value::Null),
            ],
            "t",
        )
        .unwrap();
        let Value::Map(entries) = m else { panic!() };
        let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| ciborium_bytes(k)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // Bytewise, not length-first: 24 (0x18 0x18) sorts before -1 (0x20).
        assert_eq!(entries.get(1).map(|e| &e.0), Some(&int(24)));
        assert!(canonical_map(
            vec![(int(1), Value::Null), (int(1), Value::Bool(true))],
            "t"
        )
        .is_err());
    }
}
