//! The trust store: trust anchors ("roots") and untrusted CA certificates
//! ("intermediates") that help build paths.

use super::certificate::{parse_pem_or_der, ParsedCert, SignatureAlgorithm};
use super::manufacturers::BUNDLED_MANUFACTURER_CAS;
use super::EkCertError;
use crate::crypto;

/// Trust anchors plus intermediates used only for path building.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    pub(crate) roots: Vec<ParsedCert>,
    pub(crate) intermediates: Vec<ParsedCert>,
}

impl TrustStore {
    /// A store with no certificates: nothing verifies against it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The bundled TPM manufacturer CAs (Infineon, STMicro, Nuvoton, Intel,
    /// GlobalSign, Nationz, Alibaba Cloud vTPM), embedded at build time.
    ///
    /// Self-signed certificates become roots. A bundled certificate whose
    /// issuer is *not* in the bundle is also a root: the vendor publishes it
    /// as the top of its hierarchy (e.g. "IFX TPM EK Root CA", cross-signed by
    /// the retired VeriSign TPM root; "STM TPM ECC Root CA 01", signed by a
    /// GlobalSign ECC root that is not bundled). Every other certificate is an
    /// intermediate, trusted only through a chain to a root.
    pub fn manufacturers() -> Result<Self, EkCertError> {
        let mut all: Vec<ParsedCert> = Vec::new();
        for (_, pem) in BUNDLED_MANUFACTURER_CAS {
            for cert in parse_pem_or_der(pem)? {
                if !all.iter().any(|c| c.der == cert.der) {
                    all.push(cert);
                }
            }
        }
        let mut store = TrustStore::empty();
        for cert in &all {
            let issuer_in_bundle = all
                .iter()
                .any(|other| other.der != cert.der && signed_by(cert, other));
            if is_self_signed(cert) || !issuer_in_bundle {
                store.roots.push(cert.clone());
            } else {
                store.intermediates.push(cert.clone());
            }
        }
        Ok(store)
    }

    /// Add trust anchors: a PEM bundle (one or more CERTIFICATE blocks) or
    /// one DER certificate. Returns how many certificates the input held.
    pub fn add_root_pem_or_der(&mut self, bytes: &[u8]) -> Result<usize, EkCertError> {
        let certs = parse_pem_or_der(bytes)?;
        let count = certs.len();
        for cert in certs {
            if !self.roots.iter().any(|c| c.der == cert.der) {
                self.roots.push(cert);
            }
        }
        Ok(count)
    }

    /// Add untrusted intermediates for path building: a PEM bundle or one DER
    /// certificate. Returns how many certificates the input held.
    pub fn add_intermediate_pem_or_der(&mut self, bytes: &[u8]) -> Result<usize, EkCertError> {
        let certs = parse_pem_or_der(bytes)?;
        let count = certs.len();
        for cert in certs {
            if !self.intermediates.iter().any(|c| c.der == cert.der) {
                self.intermediates.push(cert);
            }
        }
        Ok(count)
    }

    /// Number of distinct certificates (roots and intermediates).
    pub fn len(&self) -> usize {
        self.roots.len() + self.intermediates.len()
    }

    /// Whether the store holds no certificate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of trust anchors.
    pub fn roots_len(&self) -> usize {
        self.roots.len()
    }

    /// Subjects of the trust anchors, in insertion order.
    pub fn root_subjects(&self) -> impl Iterator<Item = &str> {
        self.roots.iter().map(|c| c.subject.as_str())
    }
}

/// Whether `cert` names `issuer` and its signature verifies with `issuer`'s key.
pub(crate) fn signed_by(cert: &ParsedCert, issuer: &ParsedCert) -> bool {
    if !cert.may_be_issued_by(issuer) {
        return false;
    }
    match (&cert.signature_algorithm, &issuer.public_key) {
        (SignatureAlgorithm::Supported(scheme), Ok(key)) => {
            crypto::verify(key, *scheme, &cert.tbs, &cert.signature).is_ok()
        }
        _ => false,
    }
}

fn is_self_signed(cert: &ParsedCert) -> bool {
    cert.subject_der == cert.issuer_der && signed_by(cert, cert)
}
