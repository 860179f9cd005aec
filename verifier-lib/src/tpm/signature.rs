//! `TPMT_SIGNATURE`.

use serde::Serialize;

use super::{hex_bytes, TpmError};
use crate::crypto::{Curve, HashAlg, SigScheme};
use crate::wire::Reader;

/// Largest RSA signature accepted (RSA-16384 would be 2048 bytes; TPMs do at most 4096-bit).
const MAX_RSA_SIG: usize = 1024;
/// Largest ECC field (P-521).
const MAX_ECC_FIELD: usize = 66;
/// Field sizes of the supported curves, ascending.
const FIELD_SIZES: [usize; 3] = [32, 48, 66];

/// Signature algorithms a quote may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SigAlg {
    /// `TPM_ALG_ECDSA`.
    EcDsa,
    /// `TPM_ALG_RSASSA` (PKCS#1 v1.5).
    RsaSsa,
    /// `TPM_ALG_RSAPSS`.
    RsaPss,
}

impl SigAlg {
    /// The TPM_ALG_ID.
    pub fn tpm_alg_id(self) -> u16 {
        match self {
            SigAlg::EcDsa => 0x0018,
            SigAlg::RsaSsa => 0x0014,
            SigAlg::RsaPss => 0x0016,
        }
    }

    /// The algorithm for a TPM_ALG_ID, if supported.
    pub fn from_tpm_alg_id(id: u16) -> Option<SigAlg> {
        match id {
            0x0018 => Some(SigAlg::EcDsa),
            0x0014 => Some(SigAlg::RsaSsa),
            0x0016 => Some(SigAlg::RsaPss),
            _ => None,
        }
    }
}

/// A parsed signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub scheme: SigAlg,
    pub hash: HashAlg,
    /// ECDSA: `r ‖ s`, each left-padded to the same width (the smallest
    /// supported field size that holds both; re-padded to the AK's curve at
    /// verification). RSA: the signature as given.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

impl Signature {
    /// Parse a `TPMT_SIGNATURE` (RSASSA, RSAPSS or ECDSA), rejecting trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Signature, TpmError> {
        let mut r = Reader::new(bytes);
        let alg_id = r.u16_be("signature.sigAlg")?;
        let scheme = SigAlg::from_tpm_alg_id(alg_id).ok_or(TpmError::UnsupportedAlgorithm {
            field: "signature.sigAlg",
            id: alg_id,
        })?;
        let hash_id = r.u16_be("signature.hash")?;
        let hash = HashAlg::from_tpm_alg_id(hash_id).ok_or(TpmError::UnsupportedAlgorithm {
            field: "signature.hash",
            id: hash_id,
        })?;
        let bytes = match scheme {
            SigAlg::RsaSsa | SigAlg::RsaPss => r.tpm2b_max("signature.sig", MAX_RSA_SIG)?.to_vec(),
            SigAlg::EcDsa => {
                let sig_r = r.tpm2b("signature.signatureR")?;
                let sig_s = r.tpm2b("signature.signatureS")?;
                ecdsa_fixed(sig_r, sig_s)?
            }
        };
        r.finish()?;
        Ok(Signature {
            scheme,
            hash,
            bytes,
        })
    }

    /// A raw RSASSA-PKCS1-v1_5 signature not wrapped in a `TPMT_SIGNATURE`
    /// (e.g. Azure vTPM quotes), with the hash the caller states.
    pub fn from_raw_rsa_pkcs1(hash: HashAlg, bytes: &[u8]) -> Signature {
        Signature {
            scheme: SigAlg::RsaSsa,
            hash,
            bytes: bytes.to_vec(),
        }
    }

    /// A raw RSASSA-PSS signature (salt length = hash length) with a stated hash.
    pub fn from_raw_rsa_pss(hash: HashAlg, bytes: &[u8]) -> Signature {
        Signature {
            scheme: SigAlg::RsaPss,
            hash,
            bytes: bytes.to_vec(),
        }
    }

    /// The `crypto::SigScheme` this signature is verified with.
    pub fn sig_scheme(&self) -> SigScheme {
        match self.scheme {
            SigAlg::EcDsa => SigScheme::EcdsaFixed(self.hash),
            SigAlg::RsaSsa => SigScheme::RsaPkcs1(self.hash),
            SigAlg::RsaPss => SigScheme::RsaPss(self.hash),
        }
    }

    /// For ECDSA: `r ‖ s` each left-padded to `curve`'s field size. Errors
    /// with `(component, significant length)` if one is larger than the field.
    pub(crate) fn ecdsa_for_curve(&self, curve: Curve) -> Result<Vec<u8>, (&'static str, usize)> {
        let half = self.bytes.len() / 2;
        let (sig_r, sig_s) = self.bytes.split_at(half);
        let n = curve.field_len();
        let mut out = Vec::with_capacity(2 * n);
        for (name, part) in [("signatureR", sig_r), ("signatureS", sig_s)] {
            let part = strip_leading_zeros(part);
            if part.len() > n {
                return Err((name, part.len()));
            }
            out.extend(std::iter::repeat_n(0u8, n - part.len()));
            out.extend_from_slice(part);
        }
        Ok(out)
    }
}

/// `r ‖ s`, both left-padded to the smallest supported field size holding both.
fn ecdsa_fixed(sig_r: &[u8], sig_s: &[u8]) -> Result<Vec<u8>, TpmError> {
    let sig_r = strip_leading_zeros(sig_r);
    let sig_s = strip_leading_zeros(sig_s);
    for (field, part) in [("signatureR", sig_r), ("signatureS", sig_s)] {
        if part.len() > MAX_ECC_FIELD {
            return Err(TpmError::EcdsaComponentTooLarge {
                field,
                max: MAX_ECC_FIELD,
                actual: part.len(),
            });
        }
    }
    let longest = sig_r.len().max(sig_s.len());
    let width = FIELD_SIZES
        .into_iter()
        .find(|&w| w >= longest)
        .unwrap_or(MAX_ECC_FIELD);
    let mut out = Vec::with_capacity(2 * width);
    for part in [sig_r, sig_s] {
        out.extend(std::iter::repeat_n(0u8, width - part.len()));
        out.extend_from_slice(part);
    }
    Ok(out)
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    fn ecdsa_sig(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0x18, 0, 0x0b];
        for part in [r, s] {
            b.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            b.extend_from_slice(part);
        }
        b
    }

    #[test]
    fn ecdsa_components_are_padded() {
        let sig = Signature::parse(&ecdsa_sig(&[1; 31], &[0, 0, 2, 3])).unwrap();
        assert_eq!(sig.scheme, SigAlg::EcDsa);
        assert_eq!(sig.hash, HashAlg::Sha256);
        assert_eq!(sig.bytes.len(), 64);
        assert_eq!(sig.bytes[0], 0);
        assert_eq!(&sig.bytes[1..32], &[1; 31]);
        assert_eq!(&sig.bytes[62..], &[2, 3]);
        let p384 = sig.ecdsa_for_curve(Curve::P384).unwrap();
        assert_eq!(p384.len(), 96);
        assert_eq!(&p384[17..48], &[1; 31]);
        // A 48-byte r cannot be a P-256 signature.
        let big = Signature::parse(&ecdsa_sig(&[1; 48], &[2; 32])).unwrap();
        assert_eq!(big.bytes.len(), 96);
        assert_eq!(big.ecdsa_for_curve(Curve::P256), Err(("signatureR", 48)));
        assert_eq!(
            Signature::parse(&ecdsa_sig(&[1; 67], &[2])),
            Err(TpmError::EcdsaComponentTooLarge {
                field: "signatureR",
                max: 66,
                actual: 67
            })
        );
    }

    #[test]
    fn rejects_unknown_alg_hash_and_trailing() {
        assert_eq!(
            Signature::parse(&[0, 0x1a, 0, 0x0b, 0, 0]),
            Err(TpmError::UnsupportedAlgorithm {
                field: "signature.sigAlg",
                id: 0x1a
            })
        );
        assert_eq!(
            Signature::parse(&[0, 0x14, 0, 0x12, 0, 0]),
            Err(TpmError::UnsupportedAlgorithm {
                field: "signature.hash",
                id: 0x12
            })
        );
        assert_eq!(
            Signature::parse(&[0, 0x14, 0, 0x0b, 0, 1, 9, 9]),
            Err(TpmError::Wire(WireError::TrailingBytes { count: 1 }))
        );
        let ok = Signature::parse(&[0, 0x16, 0, 0x0c, 0, 1, 9]).unwrap();
        assert_eq!(ok, Signature::from_raw_rsa_pss(HashAlg::Sha384, &[9]));
        assert_eq!(ok.sig_scheme(), SigScheme::RsaPss(HashAlg::Sha384));
    }
}
