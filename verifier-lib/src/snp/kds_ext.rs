//! AMD's X.509 extensions on VCEK and VLEK certificates (AMD "VCEK
//! Certificate and KDS Interface Specification"): product name, the TCB
//! security patch levels the key was derived for, and the chip's hwID.

use super::{Product, SignerKind, SnpError, TcbComponent};
use serde::Serialize;
use x509_parser::extensions::X509Extension;
use x509_parser::prelude::FromDer;

/// `structVersion`.
pub const OID_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
/// `productName` (IA5String, e.g. `Milan-B0`, `Turin`).
pub const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
/// Bootloader SPL.
pub const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
/// TEE SPL.
pub const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
/// SNP SPL.
pub const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
/// Microcode SPL.
pub const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
/// FMC SPL (Turin).
pub const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
/// `hwID`: the chip id (64 bytes on Milan/Genoa, 8 on Turin). VCEK only.
pub const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
/// `cspID`: the cloud provider a VLEK was issued to. VLEK only.
pub const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

const AMD_ARC: &str = "1.3.6.1.4.1.3704.1.";

/// The AMD extensions of a VCEK or VLEK certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AmdCertExtensions {
    pub struct_version: Option<u8>,
    pub product_name: Option<String>,
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
    pub fmc: Option<u8>,
    #[serde(serialize_with = "super::hex_serde::ser_opt")]
    pub hw_id: Option<Vec<u8>>,
    pub csp_id: Option<String>,
}

impl AmdCertExtensions {
    /// Parse the AMD extensions of a DER certificate (no signature check).
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, SnpError> {
        let (rest, cert) =
            x509_parser::certificate::X509Certificate::from_der(der).map_err(|_| {
                SnpError::CertificateParse {
                    role: super::CertRole::Leaf,
                }
            })?;
        if !rest.is_empty() {
            return Err(SnpError::CertificateParse {
                role: super::CertRole::Leaf,
            });
        }
        Self::from_extensions(cert.extensions())
    }

    /// Collect the AMD extensions from a parsed extension list. Unknown
    /// AMD SPL slots (3.4–3.7) are ignored; each known OID may appear once.
    pub fn from_extensions(exts: &[X509Extension<'_>]) -> Result<Self, SnpError> {
        let mut out = AmdCertExtensions::default();
        for ext in exts {
            let oid = ext.oid.to_id_string();
            if !oid.starts_with(AMD_ARC) {
                continue;
            }
            let v = ext.value;
            let bad = || SnpError::InvalidExtension { oid: oid.clone() };
            let slot_u8 = |slot: &mut Option<u8>| -> Result<(), SnpError> {
                if slot.is_some() {
                    return Err(bad());
                }
                *slot = Some(der_small_uint(v).ok_or_else(bad)?);
                Ok(())
            };
            match oid.as_str() {
                OID_STRUCT_VERSION => slot_u8(&mut out.struct_version)?,
                OID_BL_SPL => slot_u8(&mut out.bootloader)?,
                OID_TEE_SPL => slot_u8(&mut out.tee)?,
                OID_SNP_SPL => slot_u8(&mut out.snp)?,
                OID_UCODE_SPL => slot_u8(&mut out.microcode)?,
                OID_FMC_SPL => slot_u8(&mut out.fmc)?,
                OID_PRODUCT_NAME => {
                    if out.product_name.is_some() {
                        return Err(bad());
                    }
                    out.product_name = Some(der_ia5(v).ok_or_else(bad)?);
                }
                OID_CSP_ID => {
                    if out.csp_id.is_some() {
                        return Err(bad());
                    }
                    out.csp_id = Some(der_ia5(v).ok_or_else(bad)?);
                }
                OID_HW_ID => {
                    if out.hw_id.is_some() {
                        return Err(bad());
                    }
                    out.hw_id = Some(hw_id(v).ok_or_else(bad)?.to_vec());
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The product named by `productName` (the part before `-`).
    pub fn product(&self) -> Option<Result<Product, SnpError>> {
        self.product_name.as_deref().map(|name| {
            let line = name.split('-').next().unwrap_or(name);
            Product::from_name(line).ok_or_else(|| SnpError::UnknownProductName {
                actual: name.to_owned(),
            })
        })
    }

    /// VCEK if the certificate carries a hwID, VLEK if it carries a cspID.
    pub fn signer_kind(&self) -> Result<SignerKind, SnpError> {
        match (&self.hw_id, &self.csp_id) {
            (Some(_), None) => Ok(SignerKind::Vcek),
            (None, Some(_)) => Ok(SignerKind::Vlek),
            (None, None) => Err(SnpError::MissingExtension { oid: OID_HW_ID }),
            (Some(_), Some(_)) => Err(SnpError::InvalidExtension {
                oid: OID_CSP_ID.to_owned(),
            }),
        }
    }

    /// The certificate's SPL for one TCB component.
    pub fn spl(&self, c: TcbComponent) -> Option<u8> {
        match c {
            TcbComponent::Fmc => self.fmc,
            TcbComponent::Bootloader => self.bootloader,
            TcbComponent::Tee => self.tee,
            TcbComponent::Snp => self.snp,
            TcbComponent::Microcode => self.microcode,
        }
    }
}

/// A DER INTEGER (short form, non-negative, minimal) that fits in a byte.
fn der_small_uint(v: &[u8]) -> Option<u8> {
    let (&tag, rest) = v.split_first()?;
    let (&len, content) = rest.split_first()?;
    if tag != 0x02 || usize::from(len) != content.len() || content.is_empty() {
        return None;
    }
    match content {
        [b] if *b < 0x80 => Some(*b),
        [0x00, b] if *b >= 0x80 => Some(*b),
        _ => None,
    }
}

/// A DER IA5String with a short-form length, printable ASCII only.
fn der_ia5(v: &[u8]) -> Option<String> {
    let (&tag, rest) = v.split_first()?;
    let (&len, content) = rest.split_first()?;
    if tag != 0x16 || len >= 0x80 || usize::from(len) != content.len() {
        return None;
    }
    if !content.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    String::from_utf8(content.to_vec()).ok()
}

/// hwID: either the raw 64/8 bytes (what KDS issues) or those bytes
/// wrapped in a DER OCTET STRING. The lengths cannot be confused.
fn hw_id(v: &[u8]) -> Option<&[u8]> {
    if v.len() == 64 || v.len() == 8 {
        return Some(v);
    }
    match v {
        [0x04, len, content @ ..]
            if usize::from(*len) == content.len()
                && (content.len() == 64 || content.len() == 8) =>
        {
            Some(content)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_uint_rules() {
        assert_eq!(der_small_uint(&[2, 1, 5]), Some(5));
        assert_eq!(der_small_uint(&[2, 2, 0, 0xa9]), Some(0xa9));
        assert_eq!(der_small_uint(&[2, 2, 0, 0x05]), None);
        assert_eq!(der_small_uint(&[2, 1, 0x80]), None);
        assert_eq!(der_small_uint(&[2, 2, 1, 0]), None);
        assert_eq!(der_small_uint(&[4, 1, 5]), None);
        assert_eq!(der_small_uint(&[2, 1]), None);
        assert_eq!(der_small_uint(&[2, 1, 5, 0]), None);
    }

    #[test]
    fn hw_id_forms() {
        let raw = [7u8; 64];
        assert_eq!(hw_id(&raw), Some(&raw[..]));
        let mut wrapped = vec![4, 64];
        wrapped.extend_from_slice(&raw);
        assert_eq!(hw_id(&wrapped), Some(&raw[..]));
        assert_eq!(
            hw_id(&[4, 8, 1, 2, 3, 4, 5, 6, 7, 8]),
            Some(&[1, 2, 3, 4, 5, 6, 7, 8][..])
        );
        assert_eq!(hw_id(&[1, 2, 3]), None);
    }
}
