//! `TPMS_ATTEST` and `TPM2B_ATTEST`.

use serde::Serialize;

use super::{hex_bytes, PcrSelection, TpmError};
use crate::wire::Reader;

/// `TPM_GENERATED_VALUE`, the magic every TPM-produced attestation starts with.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ST_ATTEST_CERTIFY`.
pub const ST_ATTEST_CERTIFY: u16 = 0x8017;

/// Largest `TPM2B_NAME` (a `TPMU_NAME`: hash alg + SHA-512 digest).
const MAX_NAME: usize = 2 + 64;
/// Largest digest / `TPM2B_DATA` accepted (SHA-512).
const MAX_DIGEST: usize = 64;

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// The type-specific part of a `TPMS_ATTEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Attested {
    /// `TPMS_QUOTE_INFO`.
    Quote {
        pcr_select: PcrSelection,
        #[serde(with = "hex_bytes")]
        pcr_digest: Vec<u8>,
    },
    /// `TPMS_CERTIFY_INFO`.
    Certify {
        #[serde(with = "hex_bytes")]
        name: Vec<u8>,
        #[serde(with = "hex_bytes")]
        qualified_name: Vec<u8>,
    },
    /// Any other attestation type; its body is not interpreted.
    Other { attest_type: u16 },
}

/// A parsed `TPMS_ATTEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attest {
    pub magic: u32,
    pub attest_type: u16,
    #[serde(with = "hex_bytes")]
    pub qualified_signer: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub attested: Attested,
    /// The `TPMS_ATTEST` bytes as signed (without any `TPM2B` size prefix).
    #[serde(with = "hex_bytes")]
    pub marshalled: Vec<u8>,
}

impl Attest {
    /// Parse a raw `TPMS_ATTEST` or a `TPM2B_ATTEST`.
    ///
    /// Input starting with `TPM_GENERATED_VALUE` is a raw `TPMS_ATTEST`;
    /// otherwise a leading u16 equal to the remaining length marks a
    /// `TPM2B_ATTEST`. Anything else is [`TpmError::BadMagic`]. Quote and
    /// certify bodies are parsed fully and trailing bytes are rejected; the
    /// body of other types is kept opaque.
    pub fn parse(bytes: &[u8]) -> Result<Attest, TpmError> {
        let mut r = Reader::new(bytes);
        let first = r.u32_be("magic")?;
        if first == TPM_GENERATED_VALUE {
            return Attest::parse_raw(bytes);
        }
        let mut r = Reader::new(bytes);
        let size = usize::from(r.u16_be("attestationData.size")?);
        if size == r.remaining() {
            return Attest::parse_raw(r.rest());
        }
        Err(TpmError::BadMagic {
            expected: TPM_GENERATED_VALUE,
            actual: first,
        })
    }

    fn parse_raw(bytes: &[u8]) -> Result<Attest, TpmError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32_be("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::BadMagic {
                expected: TPM_GENERATED_VALUE,
                actual: magic,
            });
        }
        let attest_type = r.u16_be("type")?;
        let qualified_signer = r.tpm2b_max("qualifiedSigner", MAX_NAME)?.to_vec();
        let extra_data = r.tpm2b_max("extraData", MAX_DIGEST)?.to_vec();
        let clock = r.u64_be("clockInfo.clock")?;
        let reset_count = r.u32_be("clockInfo.resetCount")?;
        let restart_count = r.u32_be("clockInfo.restartCount")?;
        let safe = match r.u8("clockInfo.safe")? {
            0 => false,
            1 => true,
            v => {
                return Err(TpmError::InvalidValue {
                    field: "clockInfo.safe",
                    value: u64::from(v),
                })
            }
        };
        let firmware_version = r.u64_be("firmwareVersion")?;
        let attested = match attest_type {
            ST_ATTEST_QUOTE => {
                let pcr_select = PcrSelection::parse(&mut r)?;
                let pcr_digest = r.tpm2b_max("quoted.pcrDigest", MAX_DIGEST)?.to_vec();
                r.finish()?;
                Attested::Quote {
                    pcr_select,
                    pcr_digest,
                }
            }
            ST_ATTEST_CERTIFY => {
                let name = r.tpm2b_max("certify.name", MAX_NAME)?.to_vec();
                let qualified_name = r.tpm2b_max("certify.qualifiedName", MAX_NAME)?.to_vec();
                r.finish()?;
                Attested::Certify {
                    name,
                    qualified_name,
                }
            }
            other => Attested::Other { attest_type: other },
        };
        Ok(Attest {
            magic,
            attest_type,
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            attested,
            marshalled: bytes.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::HashAlg;
    use crate::wire::WireError;

    fn quote_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        b.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
        b.extend_from_slice(&[0, 2, 0xaa, 0xbb]); // qualifiedSigner
        b.extend_from_slice(&[0, 3, 1, 2, 3]); // extraData
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.push(1);
        b.extend_from_slice(&9u64.to_be_bytes());
        b.extend_from_slice(&PcrSelection::new([(HashAlg::Sha256, vec![0])]).marshal());
        b.extend_from_slice(&[0, 1, 0x55]);
        b
    }

    #[test]
    fn parses_raw_and_tpm2b_identically() {
        let raw = quote_bytes();
        let a = Attest::parse(&raw).unwrap();
        assert_eq!(a.qualified_signer, [0xaa, 0xbb]);
        assert_eq!(a.extra_data, [1, 2, 3]);
        assert_eq!(
            a.clock_info,
            ClockInfo {
                clock: 7,
                reset_count: 1,
                restart_count: 2,
                safe: true
            }
        );
        assert_eq!(a.firmware_version, 9);
        assert_eq!(a.marshalled, raw);
        let mut sized = u16::try_from(raw.len()).unwrap().to_be_bytes().to_vec();
        sized.extend_from_slice(&raw);
        assert_eq!(Attest::parse(&sized).unwrap(), a);
        // Wrong size prefix: neither form.
        sized[1] ^= 1;
        assert!(matches!(
            Attest::parse(&sized),
            Err(TpmError::BadMagic { .. })
        ));
    }

    #[test]
    fn rejects_trailing_bad_safe_and_bad_magic() {
        let mut raw = quote_bytes();
        raw.push(0);
        assert_eq!(
            Attest::parse(&raw),
            Err(TpmError::Wire(WireError::TrailingBytes { count: 1 }))
        );
        let mut raw = quote_bytes();
        raw[4 + 2 + 4 + 5 + 16] = 2; // clockInfo.safe
        assert_eq!(
            Attest::parse(&raw),
            Err(TpmError::InvalidValue {
                field: "clockInfo.safe",
                value: 2
            })
        );
        let mut raw = quote_bytes();
        raw[0] = 0;
        assert_eq!(
            Attest::parse(&raw),
            Err(TpmError::BadMagic {
                expected: TPM_GENERATED_VALUE,
                actual: 0x0054_4347
            })
        );
        // A TPM2B wrapping bytes with the wrong magic.
        let mut sized = u16::try_from(raw.len()).unwrap().to_be_bytes().to_vec();
        sized.extend_from_slice(&raw);
        assert!(matches!(
            Attest::parse(&sized),
            Err(TpmError::BadMagic {
                actual: 0x0054_4347,
                ..
            })
        ));
        assert!(matches!(
            Attest::parse(&[0xff, 0x54]),
            Err(TpmError::Wire(WireError::Truncated { .. }))
        ));
    }

    #[test]
    fn other_types_keep_body_opaque() {
        let mut raw = quote_bytes();
        raw[4..6].copy_from_slice(&0x8014u16.to_be_bytes());
        let a = Attest::parse(&raw).unwrap();
        assert_eq!(
            a.attested,
            Attested::Other {
                attest_type: 0x8014
            }
        );
    }
}
