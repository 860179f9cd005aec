//! AMD KDS certificate revocation lists: signed by the ARK with
//! RSASSA-PSS SHA-384, listing revoked ASK/ASVK and VCEK/VLEK serials.

use super::chain::{is_pss_sha384, normalize_serial, serial_hex, ParsedCert};
use super::SnpError;
use crate::crypto::{self, HashAlg, SigScheme};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// A parsed (not yet signature-checked) CRL. The signature, issuer and
/// currency are checked against the chain's ARK during verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    tbs: Vec<u8>,
    signature: Vec<u8>,
    issuer: Vec<u8>,
    this_update: i64,
    next_update: Option<i64>,
    revoked: Vec<Vec<u8>>,
}

/// How revocation is to be checked. There is no default: the caller says.
#[derive(Debug, Clone, Copy)]
pub enum CrlInput<'a> {
    /// Check against this CRL (it must be signed by the chain's ARK and be
    /// current at the verification time).
    Fresh(&'a Crl),
    /// Do not check revocation. The verdict records `revocation_checked: false`.
    DangerousSkip,
    /// No CRL could be obtained: verification fails (fail closed).
    Unavailable,
}

impl Crl {
    /// Parse a DER CRL; rejects trailing bytes and any signature algorithm
    /// other than RSASSA-PSS SHA-384 salt 48.
    pub fn parse(der: &[u8]) -> Result<Crl, SnpError> {
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|_| SnpError::CrlParse)?;
        if !rest.is_empty() {
            return Err(SnpError::CrlParse);
        }
        if crl.signature_algorithm != crl.tbs_cert_list.signature
            || !is_pss_sha384(&crl.signature_algorithm)
        {
            return Err(SnpError::CrlParse);
        }
        Ok(Crl {
            tbs: crl.tbs_cert_list.as_ref().to_vec(),
            signature: crl.signature_value.data.to_vec(),
            issuer: crl.tbs_cert_list.issuer.as_raw().to_vec(),
            this_update: crl.tbs_cert_list.this_update.timestamp(),
            next_update: crl.tbs_cert_list.next_update.map(|t| t.timestamp()),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| normalize_serial(r.raw_serial()))
                .collect(),
        })
    }

    /// thisUpdate (Unix seconds).
    pub fn this_update(&self) -> i64 {
        self.this_update
    }

    /// nextUpdate (Unix seconds), if present.
    pub fn next_update(&self) -> Option<i64> {
        self.next_update
    }

    /// The revoked serials as lower-case hex.
    pub fn revoked_serials(&self) -> Vec<String> {
        self.revoked.iter().map(|s| serial_hex(s)).collect()
    }

    pub(crate) fn is_revoked(&self, normalized_serial: &[u8]) -> bool {
        self.revoked.iter().any(|s| s == normalized_serial)
    }

    /// Check that `ark` issued and signed this CRL and that it is current
    /// at `now` (a CRL without nextUpdate is never current).
    pub(crate) fn check_issued_by(&self, ark: &ParsedCert, now: i64) -> Result<(), SnpError> {
        if self.issuer != ark.subject {
            return Err(SnpError::CrlIssuerMismatch);
        }
        crypto::verify(
            &ark.key,
            SigScheme::RsaPss(HashAlg::Sha384),
            &self.tbs,
            &self.signature,
        )
        .map_err(|_| SnpError::CrlSignatureInvalid)?;
        let current = now >= self.this_update && self.next_update.is_some_and(|n| now <= n);
        if !current {
            return Err(SnpError::CrlNotCurrent {
                this_update: self.this_update,
                next_update: self.next_update,
                now,
            });
        }
        Ok(())
    }
}
