//! Decoding one X.509 certificate into an owned, checked form: PEM/DER
//! framing, NV padding, the signature algorithm, the public key, the
//! extensions the chain builder needs and the TPM identity in the SAN.

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::signature_algorithm::RsaSsaPssParams;

use super::EkCertError;
use crate::crypto::{Curve, HashAlg, PublicKey, SigScheme};

/// OID of the TPM manufacturer attribute in the SAN directoryName.
const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
/// OID of the TPM model attribute.
const OID_TPM_MODEL: &str = "2.23.133.2.2";
/// OID of the TPM version attribute.
const OID_TPM_VERSION: &str = "2.23.133.2.3";

/// Extensions this module understands well enough to accept them as critical:
/// basicConstraints, keyUsage, SAN, EKU, certificatePolicies,
/// subjectDirectoryAttributes (TPM specification attributes), AKID, SKID.
const HANDLED_CRITICAL: [&str; 8] = [
    "2.5.29.19",
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.37",
    "2.5.29.32",
    "2.5.29.9",
    "2.5.29.35",
    "2.5.29.14",
];

/// The signature algorithm of a certificate, mapped to a scheme `crypto::verify` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureAlgorithm {
    Supported(SigScheme),
    /// Not supported; carries the algorithm OID (dotted) for the error.
    Unsupported(String),
}

/// basicConstraints and keyUsage as far as path validation needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CaConstraints {
    /// `Some(ca)` when basicConstraints is present.
    pub is_ca: Option<bool>,
    pub path_len: Option<u32>,
    /// `Some(key_cert_sign)` when keyUsage is present.
    pub key_cert_sign: Option<bool>,
}

/// TPM identity from the SAN directoryName.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TpmIdentity {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
}

/// One decoded certificate, owning everything it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedCert {
    /// The exact DER of the certificate (padding removed).
    pub der: Vec<u8>,
    /// The raw TBSCertificate the signature covers.
    pub tbs: Vec<u8>,
    pub signature_algorithm: SignatureAlgorithm,
    pub signature: Vec<u8>,
    /// The subject key, or the SPKI algorithm OID when it is not supported.
    pub public_key: Result<PublicKey, String>,
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    pub constraints: CaConstraints,
    /// The first critical extension this module does not handle.
    pub unhandled_critical: Option<String>,
    pub tpm: TpmIdentity,
}

impl ParsedCert {
    /// Decode one certificate whose DER is exactly `der` (no trailing bytes).
    pub fn from_der(der: &[u8]) -> Result<ParsedCert, EkCertError> {
        check_unsigned_envelope(der)?;
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| EkCertError::Der {
            field: "certificate",
            detail: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(EkCertError::TrailingData { count: rest.len() });
        }
        let tbs = &cert.tbs_certificate;
        let subject = tbs.subject.to_string();
        let mut subject_key_id = None;
        let mut authority_key_id = None;
        let mut constraints = CaConstraints {
            is_ca: None,
            path_len: None,
            key_cert_sign: None,
        };
        let mut unhandled_critical = None;
        let mut tpm = TpmIdentity::default();
        for ext in tbs.extensions() {
            let oid = ext.oid.to_id_string();
            if ext.critical && unhandled_critical.is_none() && !HANDLED_CRITICAL.contains(&&*oid) {
                unhandled_critical = Some(oid.clone());
            }
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => subject_key_id = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    authority_key_id = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::BasicConstraints(bc) => {
                    constraints.is_ca = Some(bc.ca);
                    constraints.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => {
                    constraints.key_cert_sign = Some(ku.key_cert_sign());
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        if let GeneralName::DirectoryName(dn) = name {
                            for attr in dn.iter_attributes() {
                                let value = attribute_text(attr.attr_value());
                                match attr.attr_type().to_id_string().as_str() {
                                    OID_TPM_MANUFACTURER => tpm.manufacturer = Some(value),
                                    OID_TPM_MODEL => tpm.model = Some(value),
                                    OID_TPM_VERSION => tpm.version = Some(value),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
                ParsedExtension::ParseError { error } if ext.critical => {
                    return Err(EkCertError::Der {
                        field: "critical extension",
                        detail: format!("{oid}: {error}"),
                    });
                }
                _ => {}
            }
        }
        Ok(ParsedCert {
            der: der.to_vec(),
            tbs: tbs.as_ref().to_vec(),
            signature_algorithm: signature_algorithm(&cert),
            signature: cert.signature_value.data.to_vec(),
            public_key: public_key(&cert),
            subject_der: tbs.subject.as_raw().to_vec(),
            issuer_der: tbs.issuer.as_raw().to_vec(),
            issuer: tbs.issuer.to_string(),
            subject,
            serial_hex: hex::encode(tbs.raw_serial()),
            not_before: tbs.validity.not_before.timestamp(),
            not_after: tbs.validity.not_after.timestamp(),
            subject_key_id,
            authority_key_id,
            constraints,
            unhandled_critical,
            tpm,
        })
    }

    /// Whether `self` names `issuer` as its issuer: equal names (raw DER, or
    /// the same rendered name for re-encoded but equal names) and, when both
    /// identifiers are present, AKID == SKID.
    pub fn may_be_issued_by(&self, issuer: &ParsedCert) -> bool {
        let names_match = self.issuer_der == issuer.subject_der
            || (!self.issuer.is_empty() && self.issuer == issuer.subject);
        let ids_match = match (&self.authority_key_id, &issuer.subject_key_id) {
            (Some(akid), Some(skid)) => akid == skid,
            _ => true,
        };
        names_match && ids_match
    }

    /// A human-readable name for errors: the subject, or the serial for an empty subject.
    pub fn display_name(&self) -> String {
        if self.subject.is_empty() {
            format!("(empty subject, serial {})", self.serial_hex)
        } else {
            self.subject.clone()
        }
    }
}

/// The text of a directory attribute: the string if it is one, else hex.
fn attribute_text(value: &Any<'_>) -> String {
    let data = value.as_bytes();
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString => {
            match std::str::from_utf8(data) {
                Ok(s) => s.to_owned(),
                Err(_) => hex::encode(data),
            }
        }
        _ => hex::encode(data),
    }
}

fn hash_from_oid(oid: &str) -> Option<HashAlg> {
    match oid {
        "1.3.14.3.2.26" => Some(HashAlg::Sha1),
        "2.16.840.1.101.3.4.2.1" => Some(HashAlg::Sha256),
        "2.16.840.1.101.3.4.2.2" => Some(HashAlg::Sha384),
        "2.16.840.1.101.3.4.2.3" => Some(HashAlg::Sha512),
        _ => None,
    }
}

fn signature_algorithm(cert: &X509Certificate<'_>) -> SignatureAlgorithm {
    let alg = &cert.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    let scheme = match oid.as_str() {
        "1.2.840.113549.1.1.5" => Some(SigScheme::RsaPkcs1(HashAlg::Sha1)),
        "1.2.840.113549.1.1.11" => Some(SigScheme::RsaPkcs1(HashAlg::Sha256)),
        "1.2.840.113549.1.1.12" => Some(SigScheme::RsaPkcs1(HashAlg::Sha384)),
        "1.2.840.113549.1.1.13" => Some(SigScheme::RsaPkcs1(HashAlg::Sha512)),
        "1.2.840.10045.4.1" => Some(SigScheme::EcdsaDer(HashAlg::Sha1)),
        "1.2.840.10045.4.3.2" => Some(SigScheme::EcdsaDer(HashAlg::Sha256)),
        "1.2.840.10045.4.3.3" => Some(SigScheme::EcdsaDer(HashAlg::Sha384)),
        "1.2.840.10045.4.3.4" => Some(SigScheme::EcdsaDer(HashAlg::Sha512)),
        "1.2.840.113549.1.1.10" => alg.parameters.as_ref().and_then(pss_scheme),
        _ => None,
    };
    match scheme {
        Some(s) => SignatureAlgorithm::Supported(s),
        None => SignatureAlgorithm::Unsupported(oid),
    }
}

/// RSASSA-PSS parameters `crypto::verify` handles: MGF1 with the same hash,
/// salt length equal to the hash length, trailer field 1.
fn pss_scheme(params: &Any<'_>) -> Option<SigScheme> {
    let params = RsaSsaPssParams::try_from(params).ok()?;
    let hash = hash_from_oid(&params.hash_algorithm_oid().to_id_string())?;
    let mgf = params.mask_gen_algorithm().ok()?;
    let mgf_ok = mgf.mgf.to_id_string() == "1.2.840.113549.1.1.8"
        && hash_from_oid(&mgf.hash.to_id_string()) == Some(hash);
    let salt_ok = usize::try_from(params.salt_length()).ok() == Some(hash.output_len());
    (mgf_ok && salt_ok && params.trailer_field() == 1).then_some(SigScheme::RsaPss(hash))
}

fn public_key(cert: &X509Certificate<'_>) -> Result<PublicKey, String> {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(PublicKey::Rsa {
                n: strip_zeros(rsa.modulus).to_vec(),
                e: strip_zeros(rsa.exponent).to_vec(),
            }),
            _ => Err(oid),
        },
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .filter(|p| p.tag() == Tag::Oid)
                .and_then(|p| match p.as_bytes() {
                    [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => Some(Curve::P256),
                    [0x2b, 0x81, 0x04, 0x00, 0x22] => Some(Curve::P384),
                    [0x2b, 0x81, 0x04, 0x00, 0x23] => Some(Curve::P521),
                    _ => None,
                });
            let point = spki.subject_public_key.data.as_ref();
            match curve {
                Some(curve)
                    if point.first() == Some(&0x04)
                        && Some(point.len()) == curve.field_len().checked_mul(2).map(|l| l + 1) =>
                {
                    Ok(PublicKey::Ec {
                        curve,
                        point: point.to_vec(),
                    })
                }
                _ => Err(oid),
            }
        }
        _ => Err(oid),
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

/// One DER TLV with a single-byte tag: (tag, whole TLV, contents).
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    contents: &'a [u8],
}

/// Read one TLV from the front of `bytes`; `field` names it in errors.
fn read_tlv<'a>(bytes: &'a [u8], field: &'static str) -> Result<(Tlv<'a>, &'a [u8]), EkCertError> {
    let der_err = |detail: &str| EkCertError::Der {
        field,
        detail: detail.to_owned(),
    };
    let mut r = crate::wire::Reader::new(bytes);
    let tag = r.u8("tag").map_err(|_| der_err("missing"))?;
    let first = r.u8("length").map_err(|_| der_err("truncated length"))?;
    let content_len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let len_bytes = r
                .bytes(n, "length")
                .map_err(|_| der_err("truncated length"))?;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        }
        _ => return Err(der_err("indefinite or oversized length")),
    };
    let header = r.offset();
    let contents = r
        .bytes(content_len, field)
        .map_err(|_| der_err("length exceeds the input"))?;
    let (whole, rest) = bytes
        .split_at_checked(header + content_len)
        .ok_or_else(|| der_err("length exceeds the input"))?;
    Ok((
        Tlv {
            tag,
            whole,
            contents,
        },
        rest,
    ))
}

/// Length of the outer DER SEQUENCE at the start of `bytes` (header included).
pub(crate) fn outer_sequence_len(bytes: &[u8]) -> Result<usize, EkCertError> {
    let (outer, _) = read_tlv(bytes, "outer SEQUENCE")?;
    if outer.tag != 0x30 {
        return Err(EkCertError::Der {
            field: "outer SEQUENCE",
            detail: "does not start with a SEQUENCE tag".to_owned(),
        });
    }
    Ok(outer.whole.len())
}

/// Pin the parts of a certificate the signature does not cover: the outer
/// SEQUENCE holds exactly TBSCertificate, signatureAlgorithm and a BIT
/// STRING with no unused bits, and signatureAlgorithm is byte-for-byte the
/// `signature` field inside the TBSCertificate (RFC 5280 4.1.1.2).
fn check_unsigned_envelope(der: &[u8]) -> Result<(), EkCertError> {
    let err = |field: &'static str, detail: &str| EkCertError::Der {
        field,
        detail: detail.to_owned(),
    };
    let (outer, _) = read_tlv(der, "outer SEQUENCE")?;
    let (tbs, rest) = read_tlv(outer.contents, "tbsCertificate")?;
    let (sig_alg, rest) = read_tlv(rest, "signatureAlgorithm")?;
    let (sig, rest) = read_tlv(rest, "signatureValue")?;
    if outer.tag != 0x30 || tbs.tag != 0x30 || sig_alg.tag != 0x30 || sig.tag != 0x03 {
        return Err(err("outer SEQUENCE", "unexpected element tags"));
    }
    if !rest.is_empty() {
        return Err(err("outer SEQUENCE", "extra elements after signatureValue"));
    }
    if sig.contents.first() != Some(&0) {
        return Err(err("signatureValue", "BIT STRING has unused bits"));
    }
    let (first, after_first) = read_tlv(tbs.contents, "tbsCertificate version/serial")?;
    let after_serial = if first.tag == 0xa0 {
        read_tlv(after_first, "tbsCertificate serialNumber")?.1
    } else {
        after_first
    };
    let (inner_alg, _) = read_tlv(after_serial, "tbsCertificate signature")?;
    if inner_alg.whole != sig_alg.whole {
        return Err(err(
            "signatureAlgorithm",
            "differs from the signature field inside tbsCertificate",
        ));
    }
    Ok(())
}

/// Whether `bytes` looks like PEM rather than DER.
pub(crate) fn is_pem(bytes: &[u8]) -> bool {
    bytes.first() != Some(&0x30)
}

/// Every certificate in a PEM bundle or one exact DER certificate.
pub(crate) fn parse_pem_or_der(bytes: &[u8]) -> Result<Vec<ParsedCert>, EkCertError> {
    crate::pem::certificates(bytes)?
        .iter()
        .map(|der| ParsedCert::from_der(der))
        .collect()
}

/// Split DER input into the certificate (the outer SEQUENCE) and the NV
/// padding after it, which must consist of 0x00/0xff bytes only.
pub(crate) fn trim_nv_padding(bytes: &[u8]) -> Result<(&[u8], usize), EkCertError> {
    let len = outer_sequence_len(bytes)?;
    let (cert, padding) = bytes.split_at_checked(len).ok_or(EkCertError::Der {
        field: "outer SEQUENCE",
        detail: "length exceeds the input".to_owned(),
    })?;
    if padding.iter().all(|&b| b == 0x00 || b == 0xff) {
        Ok((cert, padding.len()))
    } else {
        Err(EkCertError::TrailingData {
            count: padding.len(),
        })
    }
}
