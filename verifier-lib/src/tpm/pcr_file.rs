//! The PCR file tpm2-tools writes (`tpm2_quote -o`, `tpm2_pcrread -o` in
//! its default `serialized` format), as Keylime stores it: the tools'
//! in-memory structures, little-endian, with their padding.
//!
//! ```text
//! u32 count                          TPML_PCR_SELECTION, 132 bytes
//! 16 × { u16 hash, u8 sizeofSelect, u8 pcrSelect[4], u8 pad }
//! u32 n                              number of TPML_DIGEST that follow
//! n × { u32 count,                   TPML_DIGEST, 532 bytes each
//!       8 × { u16 size, u8 buffer[64] } }
//! ```
//!
//! The digests, in order, are the values of the selected PCRs in selection
//! order (bank by bank, PCR index ascending), at most eight per
//! `TPML_DIGEST` (what one `TPM2_PCR_Read` returns).

use super::{PcrValues, TpmError};
use crate::crypto::HashAlg;
use crate::wire::Reader;

/// `TPML_PCR_SELECTION` entries (`TPM2_NUM_PCR_BANKS`).
const SELECTIONS: usize = 16;
/// `TPM2_PCR_SELECT_MAX`: bitmap bytes in the in-memory structure.
const SELECT_MAX: usize = 4;
/// `TPML_DIGEST` holds at most 8 digests of at most 64 bytes.
const DIGESTS_PER_LIST: usize = 8;
const DIGEST_MAX: usize = 64;
/// Bytes of the selection header and of one digest list.
const SELECTION_LEN: usize = 4 + SELECTIONS * 8;
const DIGEST_LIST_LEN: usize = 4 + DIGESTS_PER_LIST * (2 + DIGEST_MAX);
/// tpm2-tools keeps at most `TPM2_MAX_PCRS` (32) digest lists.
const MAX_DIGEST_LISTS: usize = 32;

impl PcrValues {
    /// Parse a tpm2-tools PCR file (see the module documentation). Every
    /// selected PCR must have exactly one digest of its bank's length.
    pub fn from_tpm2_tools_pcr_file(bytes: &[u8]) -> Result<PcrValues, TpmError> {
        let lists = bytes
            .len()
            .checked_sub(SELECTION_LEN + 4)
            .filter(|rest| rest % DIGEST_LIST_LEN == 0)
            .map(|rest| rest / DIGEST_LIST_LEN)
            .ok_or(TpmError::PcrFileLength {
                expected: "132 + 4 + 532·n bytes",
                actual: bytes.len(),
            })?;
        let mut r = Reader::new(bytes);
        let count = r.u32_le("pcr_selection.count")?;
        if count as usize > SELECTIONS {
            return Err(TpmError::InvalidValue {
                field: "pcr_selection.count",
                value: count.into(),
            });
        }
        // (bank, pcr) in selection order.
        let mut selected = Vec::new();
        for i in 0..SELECTIONS {
            let hash = r.u16_le("pcr_selection.hash")?;
            let size = r.u8("pcr_selection.sizeofSelect")?;
            let bitmap = r.array::<SELECT_MAX>("pcr_selection.pcrSelect")?;
            r.u8("pcr_selection.pad")?;
            if i >= count as usize {
                continue;
            }
            let bank = HashAlg::from_tpm_alg_id(hash).ok_or(TpmError::UnsupportedAlgorithm {
                field: "pcr_selection.hash",
                id: hash,
            })?;
            let used = bitmap
                .get(..usize::from(size))
                .ok_or(TpmError::InvalidValue {
                    field: "pcr_selection.sizeofSelect",
                    value: size.into(),
                })?;
            for (byte, bits) in (0u8..).zip(used) {
                for bit in 0..8u8 {
                    if bits & (1 << bit) != 0 {
                        selected.push((bank, byte * 8 + bit));
                    }
                }
            }
        }
        let n = r.u32_le("pcr_values.count")? as usize;
        if n != lists || n > MAX_DIGEST_LISTS {
            return Err(TpmError::PcrFileDigestLists {
                expected: lists,
                actual: n,
            });
        }
        let mut digests = Vec::new();
        for _ in 0..n {
            let in_list = r.u32_le("tpml_digest.count")?;
            if in_list as usize > DIGESTS_PER_LIST {
                return Err(TpmError::InvalidValue {
                    field: "tpml_digest.count",
                    value: in_list.into(),
                });
            }
            for k in 0..DIGESTS_PER_LIST {
                let size = usize::from(r.u16_le("tpm2b_digest.size")?);
                let buffer = r.bytes(DIGEST_MAX, "tpm2b_digest.buffer")?;
                let digest = buffer.get(..size).ok_or(TpmError::InvalidValue {
                    field: "tpm2b_digest.size",
                    value: size as u64,
                })?;
                if k < in_list as usize {
                    digests.push(digest);
                }
            }
        }
        r.finish()?;
        if digests.len() != selected.len() {
            return Err(TpmError::PcrFileDigestCount {
                expected: selected.len(),
                actual: digests.len(),
            });
        }
        let mut values = PcrValues::default();
        for ((bank, pcr), digest) in selected.into_iter().zip(digests) {
            if digest.len() != bank.output_len() {
                return Err(TpmError::PcrFileDigestSize {
                    bank,
                    pcr,
                    expected: bank.output_len(),
                    actual: digest.len(),
                });
            }
            if values.value(bank, pcr).is_some() {
                return Err(TpmError::InvalidValue {
                    field: "pcr_selection (PCR selected twice)",
                    value: pcr.into(),
                });
            }
            values.insert(bank, pcr, digest.to_vec());
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file built field by field: sha256 PCRs 0 and 9, sha1 PCR 16.
    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&2u32.to_le_bytes());
        let entries: [(u16, [u8; 4]); 2] =
            [(0x000b, [0x01, 0x02, 0, 0]), (0x0004, [0, 0, 0x01, 0])];
        for i in 0..SELECTIONS {
            match entries.get(i) {
                Some((hash, bits)) => {
                    out.extend_from_slice(&hash.to_le_bytes());
                    out.push(3);
                    out.extend_from_slice(bits);
                    out.push(0);
                }
                None => out.extend_from_slice(&[0; 8]),
            }
        }
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        for k in 0..DIGESTS_PER_LIST {
            let len: usize = match k {
                0 | 1 => 32,
                2 => 20,
                _ => 0,
            };
            out.extend_from_slice(&(len as u16).to_le_bytes());
            let mut buf = [0u8; DIGEST_MAX];
            buf[..len].fill(k as u8 + 1);
            out.extend_from_slice(&buf);
        }
        out
    }

    #[test]
    fn values_follow_the_selection_order() {
        let bytes = sample();
        let v = PcrValues::from_tpm2_tools_pcr_file(&bytes).unwrap();
        assert_eq!(v.value(HashAlg::Sha256, 0), Some(&[1u8; 32][..]));
        assert_eq!(v.value(HashAlg::Sha256, 9), Some(&[2u8; 32][..]));
        assert_eq!(v.value(HashAlg::Sha1, 16), Some(&[3u8; 20][..]));
        assert_eq!(v.0.values().map(|b| b.len()).sum::<usize>(), 3);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let good = sample();
        for len in 0..good.len() {
            assert!(
                PcrValues::from_tpm2_tools_pcr_file(&good[..len]).is_err(),
                "{len}"
            );
        }
        let mut longer = good;
        longer.push(0);
        assert!(matches!(
            PcrValues::from_tpm2_tools_pcr_file(&longer),
            Err(TpmError::PcrFileLength { .. })
        ));
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        let good = sample();
        assert!(matches!(
            PcrValues::from_tpm2_tools_pcr_file(&good[..good.len() - 1]),
            Err(TpmError::PcrFileLength { .. })
        ));
        // One digest fewer than PCRs selected.
        let mut fewer = good.clone();
        fewer[SELECTION_LEN + 4..SELECTION_LEN + 8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            PcrValues::from_tpm2_tools_pcr_file(&fewer),
            Err(TpmError::PcrFileDigestCount {
                expected: 3,
                actual: 2
            })
        );
        // A sha1 digest where a sha256 one belongs.
        let mut short = good.clone();
        short[SELECTION_LEN + 8..SELECTION_LEN + 10].copy_from_slice(&20u16.to_le_bytes());
        assert!(matches!(
            PcrValues::from_tpm2_tools_pcr_file(&short),
            Err(TpmError::PcrFileDigestSize { pcr: 0, .. })
        ));
        // An unknown bank.
        let mut bank = good.clone();
        bank[4..6].copy_from_slice(&0x0099u16.to_le_bytes());
        assert!(matches!(
            PcrValues::from_tpm2_tools_pcr_file(&bank),
            Err(TpmError::UnsupportedAlgorithm { id: 0x0099, .. })
        ));
        // A digest size beyond the buffer.
        let mut big = good.clone();
        big[SELECTION_LEN + 8..SELECTION_LEN + 10].copy_from_slice(&65u16.to_le_bytes());
        assert!(matches!(
            PcrValues::from_tpm2_tools_pcr_file(&big),
            Err(TpmError::InvalidValue {
                field: "tpm2b_digest.size",
                value: 65
            })
        ));
        // Too many selections.
        let mut many = good;
        many[..4].copy_from_slice(&17u32.to_le_bytes());
        assert!(matches!(
            PcrValues::from_tpm2_tools_pcr_file(&many),
            Err(TpmError::InvalidValue { .. })
        ));
    }
}
