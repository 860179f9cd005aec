//! The AMD certificate chain: VCEK → ASK → ARK or VLEK → ASVK → ARK.
//!
//! Every certificate is signed with RSASSA-PSS (SHA-384, MGF1-SHA-384,
//! salt 48). The ARKs are pinned in this crate; the ASK/ASVK may come from
//! the evidence or from the bundle but must chain to a pinned ARK (or to a
//! root the caller added with [`SnpTrustAnchors::with_dangerous_extra_root`]).

use super::crl::{Crl, CrlInput};
use super::kds_ext::{
    AmdCertExtensions, OID_BL_SPL, OID_PRODUCT_NAME, OID_SNP_SPL, OID_TEE_SPL, OID_UCODE_SPL,
};
use super::{Product, SignerKind, SnpError};
use crate::crypto::{self, Curve, HashAlg, PublicKey, SigScheme};
use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as X509Key;
use x509_parser::signature_algorithm::SignatureAlgorithm;
use x509_parser::x509::AlgorithmIdentifier;

const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_SECP384R1: &str = "1.3.132.0.34";

/// Pinned AMD roots and the KDS intermediates, from `verifier-lib/ca/amd/`
/// (see PROVENANCE.md there).
const PINNED_ARKS: [(Product, &[u8]); 3] = [
    (Product::Milan, include_bytes!("../../ca/amd/milan_ark.der")),
    (Product::Genoa, include_bytes!("../../ca/amd/genoa_ark.der")),
    (Product::Turin, include_bytes!("../../ca/amd/turin_ark.der")),
];
const BUNDLED_INTERMEDIATES: [&[u8]; 6] = [
    include_bytes!("../../ca/amd/milan_ask.der"),
    include_bytes!("../../ca/amd/genoa_ask.der"),
    include_bytes!("../../ca/amd/turin_ask.der"),
    include_bytes!("../../ca/amd/milan_asvk.der"),
    include_bytes!("../../ca/amd/genoa_asvk.der"),
    include_bytes!("../../ca/amd/turin_asvk.der"),
];

/// Position of a certificate in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertRole {
    /// The VCEK or VLEK.
    Leaf,
    /// The ASK or ASVK.
    Intermediate,
    /// The ARK.
    Root,
}

/// The parts of a certificate the chain checks need, owned.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCert {
    pub(crate) role: CertRole,
    pub(crate) tbs: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    pub(crate) subject: Vec<u8>,
    pub(crate) issuer: Vec<u8>,
    pub(crate) serial: Vec<u8>,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) key: PublicKey,
    pub(crate) is_ca: bool,
    pub(crate) amd: AmdCertExtensions,
}

/// Big-endian serial without leading zero bytes.
pub(crate) fn normalize_serial(raw: &[u8]) -> Vec<u8> {
    let first = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    raw.get(first..).unwrap_or_default().to_vec()
}

/// Lower-case hex of a normalized serial (`00` for zero).
pub(crate) fn serial_hex(serial: &[u8]) -> String {
    if serial.is_empty() {
        "00".to_owned()
    } else {
        hex::encode(serial)
    }
}

/// Whether `alg` is RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48, trailer 1.
pub(crate) fn is_pss_sha384(alg: &AlgorithmIdentifier<'_>) -> bool {
    if alg.algorithm.to_id_string() != OID_RSASSA_PSS {
        return false;
    }
    let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(alg) else {
        return false;
    };
    let mgf_ok = params
        .mask_gen_algorithm()
        .map(|m| m.mgf.to_id_string() == OID_MGF1 && m.hash.to_id_string() == OID_SHA384)
        .unwrap_or(false);
    params.hash_algorithm_oid().to_id_string() == OID_SHA384
        && mgf_ok
        && params.salt_length() == 48
        && params.trailer_field() == 1
}

fn public_key(cert: &X509Certificate<'_>, role: CertRole) -> Result<PublicKey, SnpError> {
    let spki = cert.public_key();
    let parsed = spki
        .parsed()
        .map_err(|_| SnpError::CertificateParse { role })?;
    match (role, parsed) {
        (CertRole::Leaf, X509Key::EC(point)) => {
            let alg = spki.algorithm.algorithm.to_id_string();
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if alg != OID_EC_PUBLIC_KEY || curve.as_deref() != Some(OID_SECP384R1) {
                return Err(SnpError::UnsupportedKey {
                    role,
                    expected: "ECDSA P-384",
                });
            }
            Ok(PublicKey::Ec {
                curve: Curve::P384,
                point: point.data().to_vec(),
            })
        }
        (CertRole::Intermediate | CertRole::Root, X509Key::RSA(rsa)) => Ok(PublicKey::Rsa {
            n: rsa.modulus.to_vec(),
            e: rsa.exponent.to_vec(),
        }),
        (CertRole::Leaf, _) => Err(SnpError::UnsupportedKey {
            role,
            expected: "ECDSA P-384",
        }),
        _ => Err(SnpError::UnsupportedKey {
            role,
            expected: "RSA",
        }),
    }
}

impl ParsedCert {
    /// Parse one DER certificate for `role`; rejects trailing bytes and any
    /// signature algorithm other than RSASSA-PSS SHA-384 salt 48.
    pub(crate) fn parse(der: &[u8], role: CertRole) -> Result<Self, SnpError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|_| SnpError::CertificateParse { role })?;
        if !rest.is_empty() {
            return Err(SnpError::CertificateParse { role });
        }
        if cert.signature_algorithm != cert.tbs_certificate.signature
            || !is_pss_sha384(&cert.signature_algorithm)
        {
            return Err(SnpError::UnsupportedCertificateAlgorithm { role });
        }
        let key = public_key(&cert, role)?;
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let amd = match role {
            CertRole::Leaf => AmdCertExtensions::from_extensions(cert.extensions())?,
            _ => AmdCertExtensions::default(),
        };
        Ok(ParsedCert {
            role,
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            signature: cert.signature_value.data.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            serial: normalize_serial(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            key,
            is_ca,
            amd,
        })
    }

    /// Verify that `issuer` signed this certificate.
    pub(crate) fn verify_signed_by(&self, issuer: &PublicKey) -> Result<(), SnpError> {
        crypto::verify(
            issuer,
            SigScheme::RsaPss(HashAlg::Sha384),
            &self.tbs,
            &self.signature,
        )
        .map_err(|_| SnpError::CertificateSignatureInvalid { role: self.role })
    }

    pub(crate) fn check_valid_at(&self, now: i64) -> Result<(), SnpError> {
        if now < self.not_before || now > self.not_after {
            return Err(SnpError::CertificateNotValid {
                role: self.role,
                not_before: self.not_before,
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct TrustedArk {
    product: Product,
    cert: ParsedCert,
    dangerous: bool,
}

/// The roots an SEV-SNP chain may end in, plus the bundled KDS
/// intermediates used when the evidence carries no ASK/ASVK.
#[derive(Debug, Clone)]
pub struct SnpTrustAnchors {
    roots: Vec<TrustedArk>,
    intermediates: Vec<ParsedCert>,
}

fn parse_ark(der: &[u8]) -> Result<ParsedCert, SnpError> {
    let cert = ParsedCert::parse(der, CertRole::Root)?;
    if cert.subject != cert.issuer {
        return Err(SnpError::IssuerMismatch {
            role: CertRole::Root,
        });
    }
    if !cert.is_ca {
        return Err(SnpError::NotCa {
            role: CertRole::Root,
        });
    }
    cert.verify_signed_by(&cert.key)?;
    Ok(cert)
}

impl SnpTrustAnchors {
    /// The pinned AMD ARKs for Milan, Genoa and Turin (self-signatures
    /// checked) and the bundled ASKs/ASVKs.
    pub fn amd_pinned() -> Result<Self, SnpError> {
        let roots = PINNED_ARKS
            .iter()
            .map(|(product, der)| {
                Ok(TrustedArk {
                    product: *product,
                    cert: parse_ark(der)?,
                    dangerous: false,
                })
            })
            .collect::<Result<Vec<_>, SnpError>>()?;
        let intermediates = BUNDLED_INTERMEDIATES
            .iter()
            .map(|der| ParsedCert::parse(der, CertRole::Intermediate))
            .collect::<Result<Vec<_>, SnpError>>()?;
        Ok(SnpTrustAnchors {
            roots,
            intermediates,
        })
    }

    /// Also trust `ark_der` (a self-signed RSA-PSS root, e.g. a test root)
    /// as the ARK for `product`. Verdicts from chains ending here are
    /// marked `dangerous_root`.
    pub fn with_dangerous_extra_root(
        mut self,
        product: Product,
        ark_der: &[u8],
    ) -> Result<Self, SnpError> {
        let cert = parse_ark(ark_der)?;
        self.roots.push(TrustedArk {
            product,
            cert,
            dangerous: true,
        });
        Ok(self)
    }

    /// The products whose roots are trusted, with whether each is a
    /// dangerous extra root.
    pub fn products(&self) -> Vec<(Product, bool)> {
        self.roots
            .iter()
            .map(|r| (r.product, r.dangerous))
            .collect()
    }

    fn bundled_intermediate_for(&self, issuer: &[u8]) -> Option<ParsedCert> {
        self.intermediates
            .iter()
            .find(|c| c.subject == issuer)
            .cloned()
    }
}

/// A verified VCEK/VLEK chain, reusable for several reports from the same
/// platform while `now` stays inside its validity.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedChain {
    /// The product of the ARK the chain ends in.
    pub product: Product,
    /// VCEK or VLEK.
    pub signer: SignerKind,
    /// The AMD extensions of the VCEK/VLEK.
    pub extensions: AmdCertExtensions,
    /// Serial of the VCEK/VLEK (hex).
    pub leaf_serial: String,
    /// Serial of the ASK/ASVK (hex).
    pub intermediate_serial: String,
    /// Latest notBefore of the three certificates.
    pub valid_from: i64,
    /// Earliest notAfter of the three certificates.
    pub valid_until: i64,
    /// thisUpdate of the CRL checked, if one was.
    pub crl_this_update: Option<i64>,
    /// nextUpdate of the CRL checked, if one was.
    pub crl_next_update: Option<i64>,
    /// Whether a CRL was checked (false only with `CrlInput::DangerousSkip`).
    pub revocation_checked: bool,
    /// Whether the chain ends in a root added with
    /// [`SnpTrustAnchors::with_dangerous_extra_root`].
    pub dangerous_root: bool,
    #[serde(skip)]
    pub(crate) key: PublicKey,
}

impl VerifiedChain {
    /// The VCEK/VLEK public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// Check that `now` is inside every certificate's validity and before
    /// the CRL's nextUpdate.
    pub fn check_current(&self, now: i64) -> Result<(), SnpError> {
        if now < self.valid_from || now > self.valid_until {
            return Err(SnpError::CertificateNotValid {
                role: CertRole::Leaf,
                not_before: self.valid_from,
                not_after: self.valid_until,
                now,
            });
        }
        if let Some(this_update) = self.crl_this_update {
            let current = now >= this_update && self.crl_next_update.is_some_and(|n| now <= n);
            if !current {
                return Err(SnpError::CrlNotCurrent {
                    this_update,
                    next_update: self.crl_next_update,
                    now,
                });
            }
        }
        Ok(())
    }
}

fn check_revocation<'c>(
    crl: CrlInput<'c>,
    ark: &ParsedCert,
    certs: [&ParsedCert; 2],
    now: i64,
) -> Result<Option<&'c Crl>, SnpError> {
    match crl {
        CrlInput::Unavailable => Err(SnpError::CrlUnavailable),
        CrlInput::DangerousSkip => Ok(None),
        CrlInput::Fresh(list) => {
            list.check_issued_by(ark, now)?;
            for cert in certs {
                if list.is_revoked(&cert.serial) {
                    return Err(SnpError::Revoked {
                        role: cert.role,
                        serial: serial_hex(&cert.serial),
                    });
                }
            }
            Ok(Some(list))
        }
    }
}

/// Verify a VCEK/VLEK chain to a trusted ARK at `now_unix`, including
/// revocation, the product name and the presence of the TCB extensions.
pub fn verify_chain(
    leaf_der: &[u8],
    intermediate_der: Option<&[u8]>,
    trust: &SnpTrustAnchors,
    crl: CrlInput<'_>,
    now_unix: i64,
) -> Result<VerifiedChain, SnpError> {
    let leaf = ParsedCert::parse(leaf_der, CertRole::Leaf)?;
    let inter = match intermediate_der {
        Some(der) => ParsedCert::parse(der, CertRole::Intermediate)?,
        None => trust
            .bundled_intermediate_for(&leaf.issuer)
            .ok_or(SnpError::MissingIntermediate)?,
    };
    if !inter.is_ca {
        return Err(SnpError::NotCa {
            role: CertRole::Intermediate,
        });
    }
    if leaf.issuer != inter.subject {
        return Err(SnpError::IssuerMismatch {
            role: CertRole::Leaf,
        });
    }
    leaf.verify_signed_by(&inter.key)?;
    let mut named = trust
        .roots
        .iter()
        .filter(|r| r.cert.subject == inter.issuer)
        .peekable();
    if named.peek().is_none() {
        return Err(SnpError::UntrustedRoot {
            role: CertRole::Intermediate,
        });
    }
    let root = named
        .find(|r| inter.verify_signed_by(&r.cert.key).is_ok())
        .ok_or(SnpError::CertificateSignatureInvalid {
            role: CertRole::Intermediate,
        })?;
    for cert in [&leaf, &inter, &root.cert] {
        cert.check_valid_at(now_unix)?;
    }
    let checked = check_revocation(crl, &root.cert, [&inter, &leaf], now_unix)?;

    let ext = leaf.amd.clone();
    let signer = ext.signer_kind()?;
    let product = root.product;
    match ext.product() {
        None => {
            return Err(SnpError::MissingExtension {
                oid: OID_PRODUCT_NAME,
            })
        }
        Some(named) => {
            let named = named?;
            if named != product {
                return Err(SnpError::ProductMismatch {
                    expected: product,
                    actual: named,
                    source_name: "VCEK/VLEK productName",
                });
            }
        }
    }
    for (value, oid) in [
        (ext.bootloader, OID_BL_SPL),
        (ext.tee, OID_TEE_SPL),
        (ext.snp, OID_SNP_SPL),
        (ext.microcode, OID_UCODE_SPL),
    ] {
        if value.is_none() {
            return Err(SnpError::MissingExtension { oid });
        }
    }
    if let Some(hw) = &ext.hw_id {
        let expected = if product == Product::Turin { 8 } else { 64 };
        if hw.len() != expected {
            return Err(SnpError::InvalidExtension {
                oid: super::kds_ext::OID_HW_ID.to_owned(),
            });
        }
    }
    let certs = [&leaf, &inter, &root.cert];
    Ok(VerifiedChain {
        product,
        signer,
        extensions: ext,
        leaf_serial: serial_hex(&leaf.serial),
        intermediate_serial: serial_hex(&inter.serial),
        valid_from: certs.iter().map(|c| c.not_before).max().unwrap_or(i64::MAX),
        valid_until: certs.iter().map(|c| c.not_after).min().unwrap_or(i64::MIN),
        crl_this_update: checked.map(|c| c.this_update()),
        crl_next_update: checked.and_then(|c| c.next_update()),
        revocation_checked: checked.is_some(),
        dangerous_root: root.dangerous,
        key: leaf.key,
    })
}
