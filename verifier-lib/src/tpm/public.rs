//! `TPMT_PUBLIC` / `TPM2B_PUBLIC`, object names, AK attribute checks and
//! attestation keys given as SubjectPublicKeyInfo.

use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{TpmError, TPM_ALG_NULL};
use crate::crypto::{Curve, HashAlg, PublicKey};
use crate::wire::Reader;

/// `TPM_ALG_RSA`.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_ECC`.
pub const TPM_ALG_ECC: u16 = 0x0023;

const MAX_DIGEST: usize = 64;
/// `TPM2B_PUBLIC_KEY_RSA` holds at most a 4096-bit modulus on real TPMs.
const MAX_RSA_BYTES: usize = 512;
/// `TPM2B_ECC_PARAMETER` holds at most a P-521 coordinate.
const MAX_ECC_BYTES: usize = 66;

/// `TPMA_OBJECT` bits relevant to attestation keys.
const FIXED_TPM: u32 = 1 << 1;
const FIXED_PARENT: u32 = 1 << 4;
const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const RESTRICTED: u32 = 1 << 16;
const DECRYPT: u32 = 1 << 17;
const SIGN_ENCRYPT: u32 = 1 << 18;

const AK_REQUIRED: [(u32, &str); 5] = [
    (FIXED_TPM, "fixedTPM"),
    (FIXED_PARENT, "fixedParent"),
    (SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    (RESTRICTED, "restricted"),
    (SIGN_ENCRYPT, "sign"),
];
const AK_FORBIDDEN: [(u32, &str); 1] = [(DECRYPT, "decrypt")];

const REQUEST_KEY_REQUIRED: [(u32, &str); 4] = [
    (FIXED_TPM, "fixedTPM"),
    (FIXED_PARENT, "fixedParent"),
    (SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    (SIGN_ENCRYPT, "sign"),
];
const REQUEST_KEY_FORBIDDEN: [(u32, &str); 2] = [(DECRYPT, "decrypt"), (RESTRICTED, "restricted")];

/// `TPMT_SYM_DEF_OBJECT` when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SymDef {
    pub alg: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// A parsed `TPMT_PUBLIC` of an RSA or ECC key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    /// `TPM_ALG_RSA` or `TPM_ALG_ECC`.
    pub object_type: u16,
    pub name_alg: HashAlg,
    pub object_attributes: u32,
    pub auth_policy: Vec<u8>,
    pub symmetric: Option<SymDef>,
    /// The key's scheme (`TPMT_RSA_SCHEME`/`TPMT_ECC_SCHEME`) and its hash;
    /// `None` when the scheme is `TPM_ALG_NULL`.
    pub scheme: Option<(u16, Option<HashAlg>)>,
    /// The ECC key derivation scheme (`TPMT_KDF_SCHEME`) and its hash;
    /// `None` when it is `TPM_ALG_NULL` and for RSA keys.
    pub kdf: Option<(u16, Option<HashAlg>)>,
    pub key: PublicKey,
    /// The `TPMT_PUBLIC` bytes (without a `TPM2B` size prefix).
    pub marshalled: Vec<u8>,
}

impl Public {
    /// Parse a `TPMT_PUBLIC`, or a `TPM2B_PUBLIC` when the first u16 equals the
    /// remaining length. Trailing bytes are rejected.
    pub fn parse(bytes: &[u8]) -> Result<Public, TpmError> {
        let mut r = Reader::new(bytes);
        let size = usize::from(r.u16_be("publicArea.size")?);
        if size == r.remaining() {
            Public::parse_tpmt(r.rest())
        } else {
            Public::parse_tpmt(bytes)
        }
    }

    fn parse_tpmt(bytes: &[u8]) -> Result<Public, TpmError> {
        let mut r = Reader::new(bytes);
        let object_type = r.u16_be("type")?;
        let name_alg_id = r.u16_be("nameAlg")?;
        let name_alg =
            HashAlg::from_tpm_alg_id(name_alg_id).ok_or(TpmError::UnsupportedAlgorithm {
                field: "nameAlg",
                id: name_alg_id,
            })?;
        let object_attributes = r.u32_be("objectAttributes")?;
        let auth_policy = r.tpm2b_max("authPolicy", MAX_DIGEST)?.to_vec();
        let symmetric = sym_def(&mut r)?;
        let (scheme, kdf, key) = match object_type {
            TPM_ALG_RSA => {
                let scheme =
                    scheme_selector(&mut r, "parameters.rsaDetail.scheme", rsa_scheme_details)?;
                let key_bits = r.u16_be("parameters.rsaDetail.keyBits")?;
                let exponent = r.u32_be("parameters.rsaDetail.exponent")?;
                let exponent = if exponent == 0 { 65537 } else { exponent };
                let n = r.tpm2b_max("unique.rsa", MAX_RSA_BYTES)?;
                let expected = usize::from(key_bits / 8);
                if key_bits % 8 != 0 || n.len() != expected {
                    return Err(TpmError::KeySizeMismatch {
                        field: "unique.rsa",
                        expected,
                        actual: n.len(),
                    });
                }
                let e = exponent.to_be_bytes().to_vec();
                (scheme, None, PublicKey::Rsa { n: n.to_vec(), e })
            }
            TPM_ALG_ECC => {
                let scheme =
                    scheme_selector(&mut r, "parameters.eccDetail.scheme", ecc_scheme_details)?;
                let curve_id = r.u16_be("parameters.eccDetail.curveID")?;
                let curve =
                    Curve::from_tpm_curve_id(curve_id).ok_or(TpmError::UnsupportedAlgorithm {
                        field: "parameters.eccDetail.curveID",
                        id: curve_id,
                    })?;
                let kdf = scheme_selector(&mut r, "parameters.eccDetail.kdf", kdf_details)?;
                let x = r.tpm2b_max("unique.ecc.x", MAX_ECC_BYTES)?;
                let y = r.tpm2b_max("unique.ecc.y", MAX_ECC_BYTES)?;
                let key = PublicKey::ec_from_xy(curve, x, y).ok_or(TpmError::InvalidEccPoint {
                    curve,
                    x_len: x.len(),
                    y_len: y.len(),
                })?;
                (scheme, kdf, key)
            }
            other => {
                return Err(TpmError::UnsupportedAlgorithm {
                    field: "type",
                    id: other,
                })
            }
        };
        r.finish()?;
        Ok(Public {
            object_type,
            name_alg,
            object_attributes,
            auth_policy,
            symmetric,
            scheme,
            kdf,
            key,
            marshalled: bytes.to_vec(),
        })
    }

    /// The object's name: `nameAlg` (u16 big-endian) ‖ H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.tpm_alg_id().to_be_bytes().to_vec();
        name.extend(self.name_alg.digest(&self.marshalled));
        name
    }

    /// Check the attributes of an attestation key: `restricted`, `sign`,
    /// `fixedTPM`, `fixedParent` and `sensitiveDataOrigin` set, `decrypt` clear.
    pub fn check_ak_attributes(&self) -> Result<(), TpmError> {
        self.check_attributes(&AK_REQUIRED, &AK_FORBIDDEN)
    }

    /// Check the attributes of a request-signing key: `sign`, `fixedTPM`,
    /// `fixedParent` and `sensitiveDataOrigin` set; `decrypt` and
    /// `restricted` clear (it signs digests it is given, so it must never
    /// pass for an attestation key, and it never leaves its TPM).
    pub fn check_request_key_attributes(&self) -> Result<(), TpmError> {
        self.check_attributes(&REQUEST_KEY_REQUIRED, &REQUEST_KEY_FORBIDDEN)
    }

    fn check_attributes(
        &self,
        required: &[(u32, &'static str)],
        forbidden: &[(u32, &'static str)],
    ) -> Result<(), TpmError> {
        let a = self.object_attributes;
        let missing: Vec<&'static str> = required
            .iter()
            .filter(|(bit, _)| a & bit == 0)
            .map(|&(_, name)| name)
            .collect();
        let forbidden: Vec<&'static str> = forbidden
            .iter()
            .filter(|(bit, _)| a & bit != 0)
            .map(|&(_, name)| name)
            .collect();
        if missing.is_empty() && forbidden.is_empty() {
            Ok(())
        } else {
            Err(TpmError::AkAttributes {
                attributes: a,
                missing,
                forbidden,
            })
        }
    }
}

/// `TPMT_SYM_DEF_OBJECT`.
fn sym_def(r: &mut Reader<'_>) -> Result<Option<SymDef>, TpmError> {
    let alg = r.u16_be("parameters.symmetric.algorithm")?;
    if alg == TPM_ALG_NULL {
        return Ok(None);
    }
    // AES, SM4 and Camellia are the only symmetric object algorithms.
    if !matches!(alg, 0x0006 | 0x0013 | 0x0026) {
        return Err(TpmError::UnsupportedAlgorithm {
            field: "parameters.symmetric.algorithm",
            id: alg,
        });
    }
    let key_bits = r.u16_be("parameters.symmetric.keyBits")?;
    let mode = r.u16_be("parameters.symmetric.mode")?;
    Ok(Some(SymDef {
        alg,
        key_bits,
        mode,
    }))
}

/// What follows a scheme selector: nothing, a hash, or a hash and a u16 count.
enum Details {
    None,
    Hash,
    HashAndCount,
}

fn rsa_scheme_details(alg: u16) -> Option<Details> {
    match alg {
        0x0014 | 0x0016 | 0x0017 => Some(Details::Hash), // RSASSA, RSAPSS, OAEP
        0x0015 => Some(Details::None),                   // RSAES
        _ => None,
    }
}

fn ecc_scheme_details(alg: u16) -> Option<Details> {
    match alg {
        0x0018 | 0x0019 | 0x001b | 0x001c | 0x001d => Some(Details::Hash), // ECDSA, ECDH, SM2, ECSCHNORR, ECMQV
        0x001a => Some(Details::HashAndCount),                             // ECDAA
        _ => None,
    }
}

fn kdf_details(alg: u16) -> Option<Details> {
    match alg {
        0x0007 | 0x0020 | 0x0021 | 0x0022 => Some(Details::Hash), // MGF1, KDF1-56A, KDF2, KDF1-108
        _ => None,
    }
}

/// A scheme selector and its details; `None` for `TPM_ALG_NULL`.
fn scheme_selector(
    r: &mut Reader<'_>,
    field: &'static str,
    details: fn(u16) -> Option<Details>,
) -> Result<Option<(u16, Option<HashAlg>)>, TpmError> {
    let alg = r.u16_be(field)?;
    if alg == TPM_ALG_NULL {
        return Ok(None);
    }
    let kind = details(alg).ok_or(TpmError::UnsupportedAlgorithm { field, id: alg })?;
    let hash = match kind {
        Details::None => None,
        Details::Hash | Details::HashAndCount => {
            let id = r.u16_be(field)?;
            Some(HashAlg::from_tpm_alg_id(id).ok_or(TpmError::UnsupportedAlgorithm { field, id })?)
        }
    };
    if let Details::HashAndCount = kind {
        r.u16_be(field)?;
    }
    Ok(Some((alg, hash)))
}

/// An attestation key usable for quote verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AkPublic {
    /// A TPM public area: has a name, attributes and possibly a fixed scheme.
    Tpm(Public),
    /// A bare SubjectPublicKeyInfo key: no name, no attributes.
    Spki(PublicKey),
}

impl AkPublic {
    /// Auto-detect and parse PEM SPKI, DER SPKI, `TPMT_PUBLIC` or `TPM2B_PUBLIC`.
    pub fn parse_any(bytes: &[u8]) -> Result<AkPublic, TpmError> {
        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let trailing = pem_trailing_bytes(bytes);
            if trailing != 0 {
                return Err(crate::wire::WireError::TrailingBytes { count: trailing }.into());
            }
            let blocks = pem::parse_many(bytes).map_err(|e| TpmError::UnexpectedPem {
                expected: "PUBLIC KEY",
                actual: e.to_string(),
            })?;
            return match blocks.as_slice() {
                [one] if one.tag() == "PUBLIC KEY" => {
                    spki_public_key(one.contents()).map(AkPublic::Spki)
                }
                [one] => Err(TpmError::UnexpectedPem {
                    expected: "PUBLIC KEY",
                    actual: one.tag().to_owned(),
                }),
                many => Err(TpmError::UnexpectedPem {
                    expected: "PUBLIC KEY",
                    actual: format!("{} blocks", many.len()),
                }),
            };
        }
        // A DER SEQUENCE; a TPM2B_PUBLIC would need a size of at least 0x3000.
        if bytes.first() == Some(&0x30) {
            return spki_public_key(bytes).map(AkPublic::Spki);
        }
        Public::parse(bytes).map(AkPublic::Tpm)
    }

    /// The key material.
    pub fn key(&self) -> &PublicKey {
        match self {
            AkPublic::Tpm(p) => &p.key,
            AkPublic::Spki(k) => k,
        }
    }

    /// The TPM name, if the key came from a TPM public area.
    pub fn name(&self) -> Option<Vec<u8>> {
        match self {
            AkPublic::Tpm(p) => Some(p.name()),
            AkPublic::Spki(_) => None,
        }
    }
}

/// Number of non-whitespace bytes after the last PEM `-----END ...-----` line
/// (0 if there is no END line: the PEM parser reports that).
fn pem_trailing_bytes(bytes: &[u8]) -> usize {
    const END: &[u8] = b"-----END";
    let Some(start) = bytes.windows(END.len()).rposition(|w| w == END) else {
        return 0;
    };
    let after_marker = bytes.get(start + END.len()..).unwrap_or_default();
    let Some(close) = after_marker.windows(5).position(|w| w == b"-----") else {
        return 0;
    };
    let rest = after_marker.get(close + 5..).unwrap_or_default();
    rest.iter().filter(|b| !b.is_ascii_whitespace()).count()
}

/// Convert a DER SubjectPublicKeyInfo (RSA or EC P-256/P-384/P-521) to a `PublicKey`.
fn spki_public_key(der: &[u8]) -> Result<PublicKey, TpmError> {
    let invalid = |reason: String| TpmError::InvalidSpki { reason };
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|e| invalid(e.to_string()))?;
    if !rest.is_empty() {
        return Err(crate::wire::WireError::TrailingBytes { count: rest.len() }.into());
    }
    let parsed = spki.parsed().map_err(|e| invalid(e.to_string()))?;
    match parsed {
        x509_parser::public_key::PublicKey::RSA(rsa) => Ok(PublicKey::Rsa {
            n: rsa.modulus.to_vec(),
            e: rsa.exponent.to_vec(),
        }),
        x509_parser::public_key::PublicKey::EC(point) => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or_else(|| invalid("EC key without a named curve".to_owned()))?;
            let curve = match curve_oid.to_id_string().as_str() {
                "1.2.840.10045.3.1.7" => Curve::P256,
                "1.3.132.0.34" => Curve::P384,
                "1.3.132.0.35" => Curve::P521,
                other => return Err(invalid(format!("unsupported curve {other}"))),
            };
            let data = point.data();
            let n = curve.field_len();
            if data.len() != 1 + 2 * n || data.first() != Some(&0x04) {
                return Err(invalid(format!(
                    "EC point of {} bytes is not an uncompressed {curve:?} point",
                    data.len()
                )));
            }
            Ok(PublicKey::Ec {
                curve,
                point: data.to_vec(),
            })
        }
        _ => Err(invalid(format!(
            "unsupported key algorithm {}",
            spki.algorithm.algorithm.to_id_string()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    /// A minimal ECC P-256 TPMT_PUBLIC with the given attributes.
    fn ecc_public(attributes: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_ALG_ECC.to_be_bytes());
        b.extend_from_slice(&0x000bu16.to_be_bytes());
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&[0, 0]); // authPolicy
        b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // symmetric
        b.extend_from_slice(&[0, 0x18, 0, 0x0b]); // ECDSA-SHA256
        b.extend_from_slice(&[0, 3]); // P-256
        b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // kdf
        b.extend_from_slice(&[0, 32]);
        b.extend_from_slice(&[1; 32]);
        b.extend_from_slice(&[0, 32]);
        b.extend_from_slice(&[2; 32]);
        b
    }

    #[test]
    fn parses_tpmt_and_tpm2b_and_computes_name() {
        let tpmt = ecc_public(0x0005_0072);
        let p = Public::parse(&tpmt).unwrap();
        assert_eq!(p.object_type, TPM_ALG_ECC);
        assert_eq!(p.scheme, Some((0x0018, Some(HashAlg::Sha256))));
        assert_eq!(p.symmetric, None);
        assert!(
            matches!(p.key, PublicKey::Ec { curve: Curve::P256, ref point } if point.len() == 65)
        );
        let mut sized = u16::try_from(tpmt.len()).unwrap().to_be_bytes().to_vec();
        sized.extend_from_slice(&tpmt);
        assert_eq!(Public::parse(&sized).unwrap(), p);
        let name = p.name();
        assert_eq!(&name[..2], &[0, 0x0b]);
        assert_eq!(&name[2..], HashAlg::Sha256.digest(&tpmt).as_slice());
        p.check_ak_attributes().unwrap();
    }

    #[test]
    fn ak_attribute_checks_name_the_bits() {
        // decrypt set, restricted and fixedTPM clear.
        let p = Public::parse(&ecc_public(0x0006_0070)).unwrap();
        assert_eq!(
            p.check_ak_attributes(),
            Err(TpmError::AkAttributes {
                attributes: 0x0006_0070,
                missing: vec!["fixedTPM", "restricted"],
                forbidden: vec!["decrypt"],
            })
        );
    }

    #[test]
    fn rejects_trailing_bad_types_and_points() {
        let mut b = ecc_public(0);
        b.push(0);
        assert_eq!(
            Public::parse(&b),
            Err(TpmError::Wire(WireError::TrailingBytes { count: 1 }))
        );
        let mut b = ecc_public(0);
        b[1] = 0x08; // KEYEDHASH
        assert_eq!(
            Public::parse(&b),
            Err(TpmError::UnsupportedAlgorithm {
                field: "type",
                id: 0x0008
            })
        );
        let mut b = ecc_public(0);
        b[3] = 0x10; // nameAlg NULL
        assert!(matches!(
            Public::parse(&b),
            Err(TpmError::UnsupportedAlgorithm {
                field: "nameAlg",
                ..
            })
        ));
        let mut b = ecc_public(0);
        b[17] = 0x04; // P-384 curve with 32-byte coordinates is fine (left-padded) ...
        assert!(Public::parse(&b).is_ok());
        b[17] = 0x09; // ... an unknown curve is not.
        assert!(matches!(
            Public::parse(&b),
            Err(TpmError::UnsupportedAlgorithm {
                field: "parameters.eccDetail.curveID",
                ..
            })
        ));
    }

    #[test]
    fn parse_any_detects_spki_forms() {
        // Valid PEM/DER SPKI keys are covered by the quote vectors in tests/.
        assert!(matches!(
            AkPublic::parse_any(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(TpmError::UnexpectedPem { .. })
        ));
        assert!(matches!(
            AkPublic::parse_any(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(TpmError::InvalidSpki { .. })
        ));
    }
}
