//! A test EK certificate authority: a self-signed ECDSA P-256 root and the
//! EK certificates it issues, encoded here as DER (X.509 v3, RFC 5280; the
//! EK certificate as the TCG EK Credential Profile shapes it: empty subject,
//! critical subjectAltName with the TPM manufacturer, model and version).
//! The broker trusts the root through `trust.ek_roots`, like a
//! manufacturer's CA.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::SoftTpmError;

/// ecdsa-with-SHA256.
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_PRIME256V1: &str = "1.2.840.10045.3.1.7";
const OID_COMMON_NAME: &str = "2.5.4.3";
const OID_ORGANIZATION: &str = "2.5.4.10";
const OID_SUBJECT_KEY_ID: &str = "2.5.29.14";
const OID_KEY_USAGE: &str = "2.5.29.15";
const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_AUTHORITY_KEY_ID: &str = "2.5.29.35";
const OID_EXT_KEY_USAGE: &str = "2.5.29.37";
const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
const OID_TPM_MODEL: &str = "2.23.133.2.2";
const OID_TPM_VERSION: &str = "2.23.133.2.3";
/// tcg-kp-EKCertificate.
const OID_TCG_KP_EK_CERTIFICATE: &str = "2.23.133.8.1";
/// The manufacturer id the simulated TPMs claim: "WRIT" in ASCII.
pub const TPM_MANUFACTURER: &str = "id:57524954";

/// The CA: its signing key and its certificate.
#[derive(Debug)]
pub struct TestCa {
    key: EcdsaKeyPair,
    key_id: Vec<u8>,
    name: Vec<u8>,
    /// The self-signed root certificate (DER).
    pub cert_der: Vec<u8>,
}

impl TestCa {
    /// A new CA valid from `now - 1 day` for 20 years. Returns the CA and
    /// its key as PKCS#8 (to cache).
    pub fn generate(now: i64) -> Result<(TestCa, Vec<u8>), SoftTpmError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| SoftTpmError::Crypto { step: "CA key" })?;
        let pkcs8 = key
            .to_pkcs8v1()
            .map_err(|_| SoftTpmError::Crypto { step: "CA key" })?
            .as_ref()
            .to_vec();
        let name = name(&[
            (OID_ORGANIZATION, "Writ load generator"),
            (OID_COMMON_NAME, "writ-loadgen test EK CA"),
        ]);
        let key_id = key_id(key.public_key().as_ref());
        let mut ca = TestCa {
            key,
            key_id: key_id.clone(),
            name: name.clone(),
            cert_der: Vec::new(),
        };
        let extensions = [
            extension(OID_BASIC_CONSTRAINTS, true, &seq(&[boolean(true)])),
            // keyCertSign | cRLSign
            extension(OID_KEY_USAGE, true, &bit_string(1, &[0x06])),
            extension(OID_SUBJECT_KEY_ID, false, &octet_string(&key_id)),
        ];
        let spki = spki(ca.key.public_key().as_ref());
        ca.cert_der = ca.issue(&[1], &name, &spki, now, &extensions)?;
        Ok((ca, pkcs8))
    }

    /// The CA from its cached key and certificate.
    pub fn load(pkcs8: &[u8], cert_der: Vec<u8>) -> Result<TestCa, SoftTpmError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .map_err(|_| SoftTpmError::Crypto { step: "CA key" })?;
        let key_id = key_id(key.public_key().as_ref());
        let name = name(&[
            (OID_ORGANIZATION, "Writ load generator"),
            (OID_COMMON_NAME, "writ-loadgen test EK CA"),
        ]);
        Ok(TestCa {
            key,
            key_id,
            name,
            cert_der,
        })
    }

    /// The root certificate as PEM (what `trust.ek_roots` names).
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// An EK certificate for the P-256 point `ek_point` (uncompressed SEC1).
    pub fn issue_ek_cert(
        &self,
        serial: &[u8],
        ek_point: &[u8],
        now: i64,
    ) -> Result<Vec<u8>, SoftTpmError> {
        let tpm_name = name(&[
            (OID_TPM_MANUFACTURER, TPM_MANUFACTURER),
            (OID_TPM_MODEL, "writ-loadgen"),
            (OID_TPM_VERSION, "id:00010002"),
        ]);
        // GeneralNames with one directoryName ([4], explicit: Name is a CHOICE).
        let san = seq(&[tlv(0xa4, &tpm_name)]);
        let extensions = [
            extension(OID_SUBJECT_ALT_NAME, true, &san),
            extension(OID_BASIC_CONSTRAINTS, true, &seq(&[])),
            // keyAgreement (an ECC EK)
            extension(OID_KEY_USAGE, true, &bit_string(3, &[0x08])),
            extension(
                OID_AUTHORITY_KEY_ID,
                false,
                &seq(&[tlv(0x80, &self.key_id)]),
            ),
            extension(
                OID_EXT_KEY_USAGE,
                false,
                &seq(&[oid(OID_TCG_KP_EK_CERTIFICATE)]),
            ),
        ];
        self.issue(serial, &seq(&[]), &spki(ek_point), now, &extensions)
    }

    fn issue(
        &self,
        serial: &[u8],
        subject: &[u8],
        spki: &[u8],
        now: i64,
        extensions: &[Vec<u8>],
    ) -> Result<Vec<u8>, SoftTpmError> {
        let alg = seq(&[oid(OID_ECDSA_SHA256)]);
        let validity = seq(&[utc_time(now - 86_400)?, utc_time(now + 20 * 365 * 86_400)?]);
        let tbs = seq(&[
            tlv(0xa0, &integer(&[2])),
            integer(serial),
            alg.clone(),
            self.name.clone(),
            validity,
            subject.to_vec(),
            spki.to_vec(),
            tlv(0xa3, &seq(extensions)),
        ]);
        let sig = self
            .key
            .sign(&SystemRandom::new(), &tbs)
            .map_err(|_| SoftTpmError::Crypto {
                step: "certificate signature",
            })?;
        Ok(seq(&[tbs, alg, bit_string(0, sig.as_ref())]))
    }
}

/// PEM text of `der` under `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// A key identifier: the first 20 bytes of SHA-256 of the public point.
fn key_id(point: &[u8]) -> Vec<u8> {
    Sha256::digest(point)[..20].to_vec()
}

/// DER SubjectPublicKeyInfo of a P-256 point (uncompressed SEC1).
pub fn spki(point: &[u8]) -> Vec<u8> {
    seq(&[
        seq(&[oid(OID_EC_PUBLIC_KEY), oid(OID_PRIME256V1)]),
        bit_string(0, point),
    ])
}

/// A Name of one attribute per RDN (UTF8String values).
fn name(attributes: &[(&str, &str)]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = attributes
        .iter()
        .map(|(o, v)| tlv(0x31, &seq(&[oid(o), tlv(0x0c, v.as_bytes())])))
        .collect();
    seq(&rdns)
}

fn extension(id: &str, critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(id)];
    if critical {
        parts.push(boolean(true));
    }
    parts.push(octet_string(value));
    seq(&parts)
}

/// `UTCTime` (`YYMMDDHHMMSSZ`), for instants in 1950–2049.
fn utc_time(unix: i64) -> Result<Vec<u8>, SoftTpmError> {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| SoftTpmError::Malformed {
            field: "certificate validity",
            expected: "a representable instant".into(),
            actual: unix.to_string(),
        })?;
    if !(1950..2050).contains(&t.year()) {
        return Err(SoftTpmError::Malformed {
            field: "certificate validity",
            expected: "a year in 1950..2050 (UTCTime)".into(),
            actual: t.year().to_string(),
        });
    }
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok(tlv(0x17, text.as_bytes()))
}

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn boolean(v: bool) -> Vec<u8> {
    tlv(0x01, &[if v { 0xff } else { 0x00 }])
}

/// A non-negative INTEGER from big-endian magnitude bytes.
fn integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let skip = magnitude
            .iter()
            .take_while(|&&b| b == 0)
            .count()
            .min(magnitude.len().saturating_sub(1));
        &magnitude[skip..]
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

fn bit_string(unused_bits: u8, bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![unused_bits];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

/// An OBJECT IDENTIFIER from its dotted form (well-formed constants only).
fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut content = Vec::new();
    let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
    for arc in std::iter::once(first).chain(arcs.iter().skip(2).copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        groups.reverse();
        content.extend(groups);
    }
    tlv(0x06, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_primitives_match_known_encodings() {
        assert_eq!(
            oid("1.2.840.10045.2.1"),
            hex::decode("06072a8648ce3d0201").unwrap()
        );
        assert_eq!(oid("2.23.133.8.1"), hex::decode("06056781050801").unwrap());
        assert_eq!(integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0, 0, 5]), vec![0x02, 0x01, 0x05]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(utc_time(0).unwrap(), tlv(0x17, b"700101000000Z"));
    }
}
