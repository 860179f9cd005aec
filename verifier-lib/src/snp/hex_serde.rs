//! Serde helpers: byte strings as lower-case hex, so policies read well in
//! TOML and verdicts read well in JSON.

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Serialize any byte container as a hex string.
pub(crate) fn ser<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v.as_ref()))
}

/// Serialize an optional byte container as a hex string or `null`.
pub(crate) fn ser_opt<S: Serializer, T: AsRef<[u8]>>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_some(&hex::encode(b.as_ref())),
        None => s.serialize_none(),
    }
}

/// Serialize a list of byte containers as a list of hex strings.
pub(crate) fn ser_vec<S: Serializer, T: AsRef<[u8]>>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|b| hex::encode(b.as_ref())))
}

fn decode_array<E: serde::de::Error, const N: usize>(text: &str) -> Result<[u8; N], E> {
    let bytes = hex::decode(text).map_err(E::custom)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        E::custom(format!(
            "expected {N} hex-encoded bytes, got {}",
            bytes.len()
        ))
    })
}

/// Deserialize an optional fixed-size array from a hex string.
pub(crate) fn de_opt<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<Option<[u8; N]>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(text) => decode_array::<D::Error, N>(&text).map(Some),
        None => Ok(None),
    }
}

/// Deserialize a list of fixed-size arrays from hex strings.
pub(crate) fn de_vec<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<Vec<[u8; N]>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|t| decode_array::<D::Error, N>(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(D::Error::custom)
}
