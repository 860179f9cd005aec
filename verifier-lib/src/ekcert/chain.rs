//! Path building from an EK certificate to a trust anchor.

use super::certificate::{parse_pem_or_der, trim_nv_padding, ParsedCert, SignatureAlgorithm};
use super::{EkCertError, EkCertificate, TrustStore};
use crate::crypto::{self, SignatureError};

/// Most issuer certificates (intermediates plus the root) above the EK.
pub const MAX_CHAIN_DEPTH: usize = 6;
/// Most candidate issuers examined while building one path; bounds the work
/// an attacker-chosen set of presented intermediates can cause.
pub const MAX_SIGNATURE_CHECKS: usize = 64;

/// One issuer certificate of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainCert {
    pub subject: String,
    pub serial_hex: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

/// An EK certificate whose chain to a trust anchor verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedEkChain {
    pub ek: EkCertificate,
    /// The EK's issuer first, the trust anchor last.
    pub chain: Vec<ChainCert>,
}

/// Build and verify a path from `ek` to a root of `store` at `now_unix`.
///
/// Issuer candidates come from the store's roots, the store's intermediates
/// and `presented_intermediates` (PEM or DER, e.g. chain certificates read
/// from TPM NV; 0x00/0xff NV padding after a DER certificate is trimmed).
/// A candidate must carry the certificate's issuer name (and, when both are
/// present, an SKID equal to its AKID), be a CA (basicConstraints CA:TRUE,
/// keyUsage keyCertSign if keyUsage is present, pathLenConstraint
/// respected), be valid at `now_unix`, have no unhandled critical extension
/// and verify the signature. When a candidate fails, the next is tried.
pub fn verify_ek_chain(
    ek: &EkCertificate,
    presented_intermediates: &[Vec<u8>],
    store: &TrustStore,
    now_unix: i64,
) -> Result<VerifiedEkChain, EkCertError> {
    let leaf = &ek.parsed;
    check_critical(leaf)?;
    check_validity(leaf, now_unix)?;

    let mut presented = Vec::new();
    for bytes in presented_intermediates {
        if super::certificate::is_pem(bytes) {
            presented.extend(parse_pem_or_der(bytes)?);
        } else {
            let (der, _) = trim_nv_padding(bytes)?;
            presented.push(ParsedCert::from_der(der)?);
        }
    }

    let mut pool: Vec<(&ParsedCert, bool)> = Vec::new();
    let all = store
        .roots
        .iter()
        .map(|c| (c, true))
        .chain(store.intermediates.iter().map(|c| (c, false)))
        .chain(presented.iter().map(|c| (c, false)));
    for (cert, anchor) in all {
        if !pool.iter().any(|(c, _)| c.der == cert.der) {
            pool.push((cert, anchor));
        }
    }

    let mut search = Search {
        pool,
        now: now_unix,
        checks: 0,
    };
    let mut path = vec![leaf];
    search.extend(&mut path)?;
    let chain = path
        .iter()
        .skip(1)
        .map(|c| ChainCert {
            subject: c.subject.clone(),
            serial_hex: c.serial_hex.clone(),
            not_after: c.not_after,
        })
        .collect();
    Ok(VerifiedEkChain {
        ek: ek.clone(),
        chain,
    })
}

struct Search<'a> {
    /// Every candidate issuer, with whether it is a trust anchor.
    pool: Vec<(&'a ParsedCert, bool)>,
    now: i64,
    checks: usize,
}

impl<'a> Search<'a> {
    /// Extend `path` (EK first) until it ends at a trust anchor.
    fn extend(&mut self, path: &mut Vec<&'a ParsedCert>) -> Result<(), EkCertError> {
        let Some(&cert) = path.last() else {
            return Err(EkCertError::NoCertificate);
        };
        let issuers_so_far = path.len().saturating_sub(1);
        if issuers_so_far >= MAX_CHAIN_DEPTH {
            return Err(EkCertError::ChainTooLong {
                max: MAX_CHAIN_DEPTH,
            });
        }
        let candidates: Vec<(&'a ParsedCert, bool)> = self
            .pool
            .iter()
            .filter(|(c, _)| cert.may_be_issued_by(c) && !path.iter().any(|p| p.der == c.der))
            .copied()
            .collect();
        let mut first_error = None;
        for (candidate, anchor) in candidates {
            // Issuer CA certificates already in the path sit below `candidate`.
            if let Err(e) = self.check_issuer(cert, candidate, issuers_so_far) {
                first_error.get_or_insert(e);
                continue;
            }
            path.push(candidate);
            if anchor {
                return Ok(());
            }
            match self.extend(path) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    path.pop();
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| EkCertError::NoIssuerFound {
            issuer: cert.issuer.clone(),
        }))
    }

    /// Everything that makes `issuer` acceptable as the signer of `cert`.
    fn check_issuer(
        &mut self,
        cert: &ParsedCert,
        issuer: &ParsedCert,
        intermediates_below: usize,
    ) -> Result<(), EkCertError> {
        self.checks += 1;
        if self.checks > MAX_SIGNATURE_CHECKS {
            return Err(EkCertError::SearchBudgetExhausted {
                max: MAX_SIGNATURE_CHECKS,
            });
        }
        check_critical(issuer)?;
        let c = issuer.constraints;
        if c.is_ca != Some(true) {
            return Err(EkCertError::NotACa {
                subject: issuer.display_name(),
            });
        }
        if c.key_cert_sign == Some(false) {
            return Err(EkCertError::KeyUsageNoCertSign {
                subject: issuer.display_name(),
            });
        }
        if let Some(path_len) = c.path_len {
            if usize::try_from(path_len).is_ok_and(|p| intermediates_below > p) {
                return Err(EkCertError::PathLenExceeded {
                    subject: issuer.display_name(),
                    path_len,
                    actual: intermediates_below,
                });
            }
        }
        check_signature(cert, issuer)?;
        check_validity(issuer, self.now)
    }
}

fn check_signature(cert: &ParsedCert, issuer: &ParsedCert) -> Result<(), EkCertError> {
    let scheme = match &cert.signature_algorithm {
        SignatureAlgorithm::Supported(s) => *s,
        SignatureAlgorithm::Unsupported(oid) => {
            return Err(EkCertError::UnsupportedSignatureAlgorithm { oid: oid.clone() })
        }
    };
    let key = issuer
        .public_key
        .as_ref()
        .map_err(|oid| EkCertError::UnsupportedPublicKey {
            subject: issuer.display_name(),
            oid: oid.clone(),
        })?;
    match crypto::verify(key, scheme, &cert.tbs, &cert.signature) {
        Ok(()) => Ok(()),
        Err(SignatureError::Unsupported { scheme }) => {
            Err(EkCertError::UnsupportedSignatureAlgorithm {
                oid: format!("{scheme:?} with issuer key {}", super::key_fingerprint(key)),
            })
        }
        Err(_) => Err(EkCertError::SignatureInvalid {
            subject: cert.display_name(),
        }),
    }
}

fn check_validity(cert: &ParsedCert, now: i64) -> Result<(), EkCertError> {
    if now < cert.not_before {
        Err(EkCertError::NotYetValid {
            subject: cert.display_name(),
            not_before: cert.not_before,
            now,
        })
    } else if now > cert.not_after {
        Err(EkCertError::Expired {
            subject: cert.display_name(),
            not_after: cert.not_after,
            now,
        })
    } else {
        Ok(())
    }
}

fn check_critical(cert: &ParsedCert) -> Result<(), EkCertError> {
    match &cert.unhandled_critical {
        Some(oid) => Err(EkCertError::UnhandledCriticalExtension {
            subject: cert.display_name(),
            oid: oid.clone(),
        }),
        None => Ok(()),
    }
}
