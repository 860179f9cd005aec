//! The attester's TPM client (tss-esapi over a TCTI): EK certificates and EK
//! creation, attestation keys, credential activation, quotes and PCRs.
//!
//! One [`Tpm`] is one connection. Without a resource manager (swtpm, or
//! `/dev/tpm0`) the TPM must have exactly one client, and every transient
//! object and session must be flushed: this module flushes everything it
//! loads after each operation, except the EKs it hands out ([`Ek`]), which
//! the caller flushes with [`Tpm::flush_ek`] or which are flushed when the
//! [`Tpm`] is dropped. `Tpm` is not `Send`: use it from one thread.

mod ak;
mod ek;
mod error;
mod quote;
mod request_key;

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tss_esapi::constants::PropertyTag;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::Public;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};
use verifier_lib::crypto::HashAlg;

pub use error::TpmError;
pub use request_key::{CertifiedRequestKey, RequestSignature, REQUEST_KEY_SECRET_LEN};

/// Default TCTI: the kernel's resource-managed TPM device.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// Attestation key algorithm (SHA-256 name and signing hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AkAlg {
    /// ECDSA over NIST P-256 with SHA-256.
    EccP256,
    /// RSASSA-PKCS1-v1_5 with a 2048-bit key and SHA-256.
    Rsa2048,
}

/// Endorsement key algorithm, i.e. which TCG EK credential profile template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EkAlg {
    /// RSA 2048, low-range template L-1, certificate at NV 0x01c00002.
    Rsa2048,
    /// ECC NIST P-384, high-range template H-3, certificate at NV 0x01c00016.
    EccP384,
    /// ECC NIST P-256, low-range template L-2, certificate at NV 0x01c0000a.
    EccP256,
}

impl EkAlg {
    /// NV index of the EK certificate for this algorithm (TCG EK profile).
    pub fn certificate_nv_index(self) -> u32 {
        match self {
            EkAlg::Rsa2048 => 0x01c0_0002,
            EkAlg::EccP256 => 0x01c0_000a,
            EkAlg::EccP384 => 0x01c0_0016,
        }
    }
}

/// What the TPM says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmIdentity {
    /// TPM_PT_MANUFACTURER as ASCII (e.g. `IBM`, `INTC`, `NTC`, `STM`).
    pub manufacturer: String,
    /// TPM_PT_VENDOR_STRING_1..4 concatenated, trailing NULs and spaces removed.
    pub vendor: String,
    /// TPM_PT_FIRMWARE_VERSION_1 (high 32 bits) and _2 (low 32 bits).
    pub firmware_version: u64,
    /// Whether this is a software TPM (swtpm/libtpms or the IBM simulator).
    pub software: bool,
}

/// A loaded endorsement key (transient object).
#[derive(Debug)]
pub struct Ek {
    /// Which template it was created from.
    pub alg: EkAlg,
    /// Its transient handle in this [`Tpm`] session.
    pub handle: KeyHandle,
    /// Marshalled TPM2B_PUBLIC (u16 size ‖ TPMT_PUBLIC).
    pub public_tpm2b: Vec<u8>,
}

/// A created attestation key in the form the attester persists; it is
/// re-loaded under the EK for each use and flushed afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AkBlob {
    /// The key's algorithm.
    pub alg: AkAlg,
    /// Marshalled TPM2B_PUBLIC (u16 size ‖ TPMT_PUBLIC).
    #[serde(with = "hex_bytes")]
    pub public_tpm2b: Vec<u8>,
    /// TPM2B_PRIVATE contents (the EK-wrapped private part, without the u16 size).
    #[serde(with = "hex_bytes")]
    pub private: Vec<u8>,
    /// TPM name: nameAlg (0x000b) ‖ SHA-256(TPMT_PUBLIC).
    #[serde(with = "hex_bytes")]
    pub name: Vec<u8>,
}

/// A quote and the PCR values it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteEvidence {
    /// Marshalled TPMS_ATTEST as signed (no TPM2B size prefix).
    #[serde(with = "hex_bytes")]
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// PCR values by bank and index, read around the quote and unchanged
    /// across it.
    pub pcrs: BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>,
}

/// A connection to one TPM.
#[derive(Debug)]
pub struct Tpm {
    ctx: Context,
}

impl Tpm {
    /// Connect through a TCTI string (`device:/dev/tpmrm0`,
    /// `swtpm:host=127.0.0.1,port=2321`, ...).
    pub fn open(tcti: &str) -> Result<Tpm, TpmError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|source| TpmError::Tcti {
            tcti: tcti.to_owned(),
            source,
        })?;
        let ctx = Context::new(conf).map_err(|source| TpmError::Open {
            tcti: tcti.to_owned(),
            source,
        })?;
        Ok(Tpm { ctx })
    }

    /// Manufacturer, vendor strings and firmware version, and whether they
    /// identify a software TPM.
    pub fn identity(&mut self) -> Result<TpmIdentity, TpmError> {
        let manufacturer = ascii(&[self.property(PropertyTag::Manufacturer, "manufacturer")?]);
        let vendor = ascii(&[
            self.property(PropertyTag::VendorString1, "vendor string 1")?,
            self.property(PropertyTag::VendorString2, "vendor string 2")?,
            self.property(PropertyTag::VendorString3, "vendor string 3")?,
            self.property(PropertyTag::VendorString4, "vendor string 4")?,
        ]);
        let fw1 = self.property(PropertyTag::FirmwareVersion1, "firmware version 1")?;
        let fw2 = self.property(PropertyTag::FirmwareVersion2, "firmware version 2")?;
        let software = is_software_tpm(&manufacturer, &vendor);
        Ok(TpmIdentity {
            manufacturer,
            vendor,
            firmware_version: (u64::from(fw1) << 32) | u64::from(fw2),
            software,
        })
    }

    fn property(&mut self, tag: PropertyTag, property: &'static str) -> Result<u32, TpmError> {
        self.ctx
            .get_tpm_property(tag)
            .map(Option::unwrap_or_default)
            .map_err(|source| TpmError::Property { property, source })
    }
}

/// Whether manufacturer/vendor strings are those of a software TPM: swtpm
/// (libtpms) and the IBM/Microsoft reference simulators report manufacturer
/// `IBM` with vendor `SW TPM` (or `SW   TPM`).
fn is_software_tpm(manufacturer: &str, vendor: &str) -> bool {
    let vendor_lc = vendor.to_ascii_lowercase();
    (manufacturer == "IBM" && vendor.starts_with("SW"))
        || ["swtpm", "libtpms", "simulator"]
            .iter()
            .any(|s| vendor_lc.contains(s) || manufacturer.to_ascii_lowercase().contains(s))
}

/// Big-endian u32 properties as ASCII, NULs dropped, trailing spaces trimmed.
fn ascii(words: &[u32]) -> String {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .filter(|b| *b != 0)
        .map(|b| {
            if b.is_ascii_graphic() || b == b' ' {
                b
            } else {
                b'?'
            }
        })
        .collect();
    String::from_utf8_lossy(&bytes).trim_end().to_owned()
}

/// Marshal a public area as TPM2B_PUBLIC (u16 size ‖ TPMT_PUBLIC).
fn public_to_tpm2b(public: &Public, what: &'static str) -> Result<Vec<u8>, TpmError> {
    let tpmt = public
        .marshall()
        .map_err(|source| TpmError::Marshal { what, source })?;
    let len = u16::try_from(tpmt.len()).map_err(|_| TpmError::InvalidInput {
        field: what,
        reason: "longer than a TPM2B can hold",
    })?;
    let mut out = Vec::with_capacity(tpmt.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&tpmt);
    Ok(out)
}

/// The TPMT_PUBLIC inside a TPM2B_PUBLIC, checking the size prefix.
fn tpmt_from_tpm2b<'a>(tpm2b: &'a [u8], what: &'static str) -> Result<&'a [u8], TpmError> {
    let (size, body) = tpm2b.split_at_checked(2).ok_or(TpmError::Tpm2bLength {
        what,
        expected: 2,
        actual: tpm2b.len(),
    })?;
    let expected = usize::from(u16::from_be_bytes([
        size.first().copied().unwrap_or(0),
        size.get(1).copied().unwrap_or(0),
    ]));
    if expected != body.len() {
        return Err(TpmError::Tpm2bLength {
            what,
            expected,
            actual: body.len(),
        });
    }
    Ok(body)
}

/// Unmarshal a TPM2B_PUBLIC.
fn public_from_tpm2b(tpm2b: &[u8], what: &'static str) -> Result<Public, TpmError> {
    Public::unmarshall(tpmt_from_tpm2b(tpm2b, what)?)
        .map_err(|source| TpmError::Marshal { what, source })
}

/// tss-esapi's identifier for a Writ hash algorithm.
fn hashing_algorithm(alg: HashAlg) -> Result<HashingAlgorithm, TpmError> {
    HashingAlgorithm::try_from(alg.tpm_alg_id()).map_err(|_| TpmError::InvalidInput {
        field: "hash algorithm",
        reason: "not supported by tss-esapi",
    })
}

/// Hex (de)serialization for byte fields of persisted structures.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_ref()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ascii_trims_nuls_and_spaces() {
        assert_eq!(ascii(&[0x4942_4D00]), "IBM");
        assert_eq!(ascii(&[0x5357_2020, 0x2054_504D, 0, 0]), "SW   TPM");
    }

    #[test]
    fn software_detection() {
        assert!(is_software_tpm("IBM", "SW   TPM"));
        assert!(is_software_tpm("XYZ", "libtpms"));
        assert!(!is_software_tpm("INTC", "Intel"));
        assert!(!is_software_tpm("STM", "ST33"));
    }

    #[test]
    fn tpm2b_size_is_checked() {
        assert_eq!(tpmt_from_tpm2b(&[0, 2, 9, 9], "x").unwrap(), &[9, 9]);
        assert!(tpmt_from_tpm2b(&[0, 3, 9, 9], "x").is_err());
        assert!(tpmt_from_tpm2b(&[0], "x").is_err());
    }

    #[test]
    fn ak_blob_round_trips_through_json() {
        let blob = AkBlob {
            alg: AkAlg::EccP256,
            public_tpm2b: vec![0, 1, 2],
            private: vec![3],
            name: vec![0, 0x0b],
        };
        let json = serde_json::to_string(&blob).unwrap();
        assert!(json.contains("\"000102\""));
        assert_eq!(serde_json::from_str::<AkBlob>(&json).unwrap(), blob);
    }
}
