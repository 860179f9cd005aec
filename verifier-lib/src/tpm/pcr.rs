//! `TPML_PCR_SELECTION` and PCR values per bank.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TpmError;
use crate::crypto::HashAlg;
use crate::wire::{Reader, WireError};

/// Upper bound on banks in one selection (`HASH_COUNT` is far smaller on real TPMs).
const MAX_BANKS: usize = 16;
/// `sizeofSelect` can address at most 256 PCRs since indices are `u8`.
const MAX_SIZEOF_SELECT: usize = 32;
/// `PCR_SELECT_MIN`: TPMs expect at least 3 bitmap bytes (24 PCRs).
const PCR_SELECT_MIN: usize = 3;

/// A `TPML_PCR_SELECTION`: banks in structure order, each with its selected PCR
/// indices in ascending order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrSelection {
    pub banks: Vec<(HashAlg, Vec<u8>)>,
}

impl PcrSelection {
    /// Build a selection, sorting and de-duplicating PCRs within each bank and
    /// merging repeated banks (first occurrence keeps its position).
    pub fn new(banks: impl IntoIterator<Item = (HashAlg, Vec<u8>)>) -> PcrSelection {
        let mut out: Vec<(HashAlg, Vec<u8>)> = Vec::new();
        for (bank, pcrs) in banks {
            match out.iter_mut().find(|(b, _)| *b == bank) {
                Some((_, existing)) => existing.extend(pcrs),
                None => out.push((bank, pcrs)),
            }
        }
        for (_, pcrs) in &mut out {
            pcrs.sort_unstable();
            pcrs.dedup();
        }
        PcrSelection { banks: out }
    }

    /// Parse a `TPML_PCR_SELECTION` from a reader, leaving the rest unread.
    pub fn parse(r: &mut Reader<'_>) -> Result<PcrSelection, TpmError> {
        let count = r.u32_be("pcrSelections.count")?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > MAX_BANKS {
            return Err(WireError::SizeTooLarge {
                field: "pcrSelections.count",
                max: MAX_BANKS,
                actual: count,
            }
            .into());
        }
        let mut banks = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.u16_be("pcrSelections.hash")?;
            let bank = HashAlg::from_tpm_alg_id(id).ok_or(TpmError::UnsupportedAlgorithm {
                field: "pcrSelections.hash",
                id,
            })?;
            let size = usize::from(r.u8("pcrSelections.sizeofSelect")?);
            if size > MAX_SIZEOF_SELECT {
                return Err(WireError::SizeTooLarge {
                    field: "pcrSelections.sizeofSelect",
                    max: MAX_SIZEOF_SELECT,
                    actual: size,
                }
                .into());
            }
            let bitmap = r.bytes(size, "pcrSelections.pcrSelect")?;
            let mut pcrs = Vec::new();
            for (byte_index, byte) in (0u8..).zip(bitmap) {
                for bit in 0u8..8 {
                    if byte & (1 << bit) != 0 {
                        // byte_index < 32, so this fits in u8.
                        pcrs.push(byte_index.saturating_mul(8).saturating_add(bit));
                    }
                }
            }
            banks.push((bank, pcrs));
        }
        Ok(PcrSelection { banks })
    }

    /// Parse a complete marshalled `TPML_PCR_SELECTION` (no trailing bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<PcrSelection, TpmError> {
        let mut r = Reader::new(bytes);
        let sel = PcrSelection::parse(&mut r)?;
        r.finish()?;
        Ok(sel)
    }

    /// Marshal as a `TPML_PCR_SELECTION` (bitmaps of at least 3 bytes).
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let count = u32::try_from(self.banks.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (bank, pcrs) in &self.banks {
            out.extend_from_slice(&bank.tpm_alg_id().to_be_bytes());
            let needed = pcrs
                .iter()
                .max()
                .map_or(0, |&m| usize::from(m) / 8 + 1)
                .max(PCR_SELECT_MIN);
            let mut bitmap = vec![0u8; needed];
            for &pcr in pcrs {
                if let Some(b) = bitmap.get_mut(usize::from(pcr / 8)) {
                    *b |= 1 << (pcr % 8);
                }
            }
            // needed <= 32, so it fits in u8.
            out.push(u8::try_from(needed).unwrap_or(u8::MAX));
            out.extend_from_slice(&bitmap);
        }
        out
    }

    /// True if every (bank, PCR) in `other` is also selected here.
    pub fn covers(&self, other: &PcrSelection) -> bool {
        other.iter().all(|(bank, pcr)| self.contains(bank, pcr))
    }

    /// True if `pcr` of `bank` is selected.
    pub fn contains(&self, bank: HashAlg, pcr: u8) -> bool {
        self.banks
            .iter()
            .any(|(b, pcrs)| *b == bank && pcrs.contains(&pcr))
    }

    /// Every selected (bank, PCR) in selection order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u8)> + '_ {
        self.banks
            .iter()
            .flat_map(|(bank, pcrs)| pcrs.iter().map(move |&p| (*bank, p)))
    }

    /// True if no PCR is selected.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl fmt::Display for PcrSelection {
    /// `sha256:0,1,7+sha1:16`, the tpm2-tools notation; `(none)` if empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.banks.is_empty() {
            return f.write_str("(none)");
        }
        for (i, (bank, pcrs)) in self.banks.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            write!(f, "{bank}:")?;
            for (j, p) in pcrs.iter().enumerate() {
                if j > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{p}")?;
            }
        }
        Ok(())
    }
}

/// PCR index → value for one bank.
pub type PcrBank = BTreeMap<u8, Vec<u8>>;

/// PCR values per bank. JSON form: `{"sha256": {"0": "<hex>", ...}, "sha1": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcrValues(pub BTreeMap<HashAlg, PcrBank>);

impl PcrValues {
    /// Parse the JSON form. Rejects unknown banks, non-decimal or repeated
    /// PCR keys and non-hex values.
    pub fn from_json(json: &str) -> Result<PcrValues, TpmError> {
        serde_json::from_str(json).map_err(|e| TpmError::PcrValuesJson {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// The value of `pcr` in `bank`, if present.
    pub fn value(&self, bank: HashAlg, pcr: u8) -> Option<&[u8]> {
        self.0.get(&bank)?.get(&pcr).map(Vec::as_slice)
    }

    /// Set the value of `pcr` in `bank`.
    pub fn insert(&mut self, bank: HashAlg, pcr: u8, value: Vec<u8>) {
        self.0.entry(bank).or_default().insert(pcr, value);
    }
}

impl Serialize for PcrValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Bank<'a>(&'a PcrBank);
        impl Serialize for Bank<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (pcr, value) in self.0 {
                    m.serialize_entry(&pcr.to_string(), &hex::encode(value))?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (bank, values) in &self.0 {
            m.serialize_entry(bank.name(), &Bank(values))?;
        }
        m.end()
    }
}

/// A PCR index key: canonical decimal, no sign, no leading zeros.
fn pcr_index(key: &str) -> Option<u8> {
    let canonical = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if canonical {
        key.parse().ok()
    } else {
        None
    }
}

struct BankSeed;

impl<'de> de::DeserializeSeed<'de> for BankSeed {
    type Value = PcrBank;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PcrBank, D::Error> {
        d.deserialize_map(BankVisitor)
    }
}

struct BankVisitor;

impl<'de> Visitor<'de> for BankVisitor {
    type Value = PcrBank;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from decimal PCR index to hex value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PcrBank, A::Error> {
        let mut bank = PcrBank::new();
        while let Some(key) = map.next_key::<String>()? {
            let pcr = pcr_index(&key).ok_or_else(|| {
                de::Error::custom(format_args!("PCR key {key:?} is not a decimal 0..=255"))
            })?;
            let value: String = map.next_value()?;
            let value = hex::decode(&value)
                .map_err(|e| de::Error::custom(format_args!("PCR {pcr} value is not hex: {e}")))?;
            if bank.insert(pcr, value).is_some() {
                return Err(de::Error::custom(format_args!("PCR {pcr} appears twice")));
            }
        }
        Ok(bank)
    }
}

struct ValuesVisitor;

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = PcrValues;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from bank name (sha1, sha256, sha384, sha512) to PCR values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PcrValues, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let bank = HashAlg::from_name(&key)
                .ok_or_else(|| de::Error::custom(format_args!("unknown PCR bank {key:?}")))?;
            let values = map.next_value_seed(BankSeed)?;
            if out.insert(bank, values).is_some() {
                return Err(de::Error::custom(format_args!("bank {key} appears twice")));
            }
        }
        Ok(PcrValues(out))
    }
}

impl<'de> Deserialize<'de> for PcrValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PcrValues, D::Error> {
        d.deserialize_map(ValuesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_roundtrip_and_covers() {
        let sel = PcrSelection::new([
            (HashAlg::Sha256, vec![16, 0, 7, 0]),
            (HashAlg::Sha1, vec![23]),
        ]);
        assert_eq!(
            sel.banks,
            vec![(HashAlg::Sha256, vec![0, 7, 16]), (HashAlg::Sha1, vec![23])]
        );
        let bytes = sel.marshal();
        assert_eq!(
            bytes,
            [0, 0, 0, 2, 0, 0x0b, 3, 0x81, 0, 1, 0, 4, 3, 0, 0, 0x80]
        );
        assert_eq!(PcrSelection::from_bytes(&bytes).unwrap(), sel);
        assert_eq!(sel.to_string(), "sha256:0,7,16+sha1:23");
        assert!(sel.covers(&PcrSelection::new([(HashAlg::Sha256, vec![7])])));
        assert!(sel.covers(&PcrSelection::default()));
        assert!(!sel.covers(&PcrSelection::new([(HashAlg::Sha1, vec![7])])));
        assert!(!sel.covers(&PcrSelection::new([(HashAlg::Sha384, vec![0])])));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            PcrSelection::from_bytes(&trailing),
            Err(TpmError::Wire(WireError::TrailingBytes { count: 1 }))
        );
    }

    #[test]
    fn selection_rejects_unknown_bank_and_oversize() {
        assert_eq!(
            PcrSelection::from_bytes(&[0, 0, 0, 1, 0, 0x12, 3, 1, 0, 0]),
            Err(TpmError::UnsupportedAlgorithm {
                field: "pcrSelections.hash",
                id: 0x12
            })
        );
        assert!(matches!(
            PcrSelection::from_bytes(&[0, 0, 0, 17]),
            Err(TpmError::Wire(WireError::SizeTooLarge { .. }))
        ));
        assert!(matches!(
            PcrSelection::from_bytes(&[0, 0, 0, 1, 0, 0x0b, 33]),
            Err(TpmError::Wire(WireError::SizeTooLarge { .. }))
        ));
        // PCR 255 in a 32-byte bitmap round-trips.
        let sel = PcrSelection::new([(HashAlg::Sha256, vec![255])]);
        assert_eq!(PcrSelection::from_bytes(&sel.marshal()).unwrap(), sel);
    }

    #[test]
    fn pcr_values_json_shape() {
        let json = r#"{"sha256": {"0": "00ff", "10": "AB"}, "sha1": {}}"#;
        let v = PcrValues::from_json(json).unwrap();
        assert_eq!(v.value(HashAlg::Sha256, 10), Some(&[0xab][..]));
        assert_eq!(v.value(HashAlg::Sha256, 1), None);
        let out = serde_json::to_string(&v).unwrap();
        assert_eq!(out, r#"{"sha1":{},"sha256":{"0":"00ff","10":"ab"}}"#);
        assert_eq!(PcrValues::from_json(&out).unwrap(), v);
        for bad in [
            r#"{"md5": {}}"#,
            r#"{"sha256": {"01": "00"}}"#,
            r#"{"sha256": {"+1": "00"}}"#,
            r#"{"sha256": {"256": "00"}}"#,
            r#"{"sha256": {"1": "0g"}}"#,
            r#"{"sha256": {"1": "00", "1": "01"}}"#,
            r#"{"sha256": {}, "sha256": {}}"#,
            r#"[]"#,
        ] {
            assert!(
                matches!(
                    PcrValues::from_json(bad),
                    Err(TpmError::PcrValuesJson { .. })
                ),
                "{bad}"
            );
        }
    }
}
