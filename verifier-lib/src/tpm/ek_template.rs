//! The TCG default EK templates (TCG EK Credential Profile for TPM Family
//! 2.0, version 2.5, annex B) and the check that a presented EK public area
//! is one of them.
//!
//! Credential activation only depends on the EK's key, name algorithm and
//! symmetric algorithm, so an enrolling client could send any other field
//! (authPolicy, attributes, scheme) as it likes. Only EK public areas made
//! from a default template are accepted: anything else is refused with the
//! field that differs.

use super::public::{Public, SymDef, TPM_ALG_ECC, TPM_ALG_RSA};
use crate::crypto::{Curve, HashAlg, PublicKey};

/// `TPM_ALG_AES`.
const TPM_ALG_AES: u16 = 0x0006;
/// `TPM_ALG_CFB`.
const TPM_ALG_CFB: u16 = 0x0043;

/// fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, restricted,
/// decrypt: the low-range templates (L-1, L-2).
const ATTRIBUTES_LOW: u32 = 0x0003_00b2;
/// The low-range attributes plus userWithAuth: the high-range templates.
const ATTRIBUTES_HIGH: u32 = 0x0003_00f2;

/// PolicyA, SHA-256 (`TPM2_PolicySecret(TPM_RH_ENDORSEMENT)`): annex B.3.
const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// PolicyB, SHA-384 (PolicyOR of PolicyA and the high-range policy): annex B.4.
const POLICY_B_SHA384: [u8; 48] = [
    0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc, 0xf5, 0xfd, 0x3a, 0x1a,
    0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4, 0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca,
    0xcb, 0x47, 0xba, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
];
/// PolicyB, SHA-512: annex B.4.
const POLICY_B_SHA512: [u8; 64] = [
    0xb8, 0x22, 0x1c, 0xa6, 0x9e, 0x85, 0x50, 0xa4, 0x91, 0x4d, 0xe3, 0xfa, 0xa6, 0xa1, 0x8c, 0x07,
    0x2c, 0xc0, 0x12, 0x08, 0x07, 0x3a, 0x92, 0x8d, 0x5d, 0x66, 0xd5, 0x9e, 0xf7, 0x9e, 0x49, 0xa4,
    0x29, 0xc4, 0x1a, 0x6b, 0x26, 0x95, 0x71, 0xd5, 0x7e, 0xdb, 0x25, 0xfb, 0xdb, 0x18, 0x38, 0x42,
    0x56, 0x08, 0xb4, 0x13, 0xcd, 0x61, 0x6a, 0x5f, 0x6d, 0xb5, 0xb6, 0x07, 0x1a, 0xf9, 0x9b, 0xea,
];

/// The key a template makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkTemplateKey {
    /// RSA with this modulus size in bits (exponent 0, i.e. 65537).
    Rsa { bits: usize },
    /// ECC on this curve (KDF null).
    Ecc { curve: Curve },
}

/// One TCG default EK template: every field that is not the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EkTemplate {
    /// The profile's name for it, e.g. `L-1`.
    pub name: &'static str,
    pub key: EkTemplateKey,
    pub name_alg: HashAlg,
    pub object_attributes: u32,
    pub auth_policy: &'static [u8],
    /// AES key size of the CFB symmetric algorithm.
    pub aes_key_bits: u16,
}

/// The default EK templates Writ accepts: L-1 (RSA 2048), L-2 (ECC NIST
/// P-256), H-3 (ECC NIST P-384), H-4 (ECC NIST P-521), H-6 (RSA 3072) and
/// H-7 (RSA 4096). The high-range RSA 2048 / P-256 templates (H-1, H-2) and
/// SM2 (H-5) are not accepted: a TPM of those key types uses L-1 or L-2.
pub const EK_TEMPLATES: [EkTemplate; 6] = [
    EkTemplate {
        name: "L-1",
        key: EkTemplateKey::Rsa { bits: 2048 },
        name_alg: HashAlg::Sha256,
        object_attributes: ATTRIBUTES_LOW,
        auth_policy: &POLICY_A_SHA256,
        aes_key_bits: 128,
    },
    EkTemplate {
        name: "L-2",
        key: EkTemplateKey::Ecc { curve: Curve::P256 },
        name_alg: HashAlg::Sha256,
        object_attributes: ATTRIBUTES_LOW,
        auth_policy: &POLICY_A_SHA256,
        aes_key_bits: 128,
    },
    EkTemplate {
        name: "H-3",
        key: EkTemplateKey::Ecc { curve: Curve::P384 },
        name_alg: HashAlg::Sha384,
        object_attributes: ATTRIBUTES_HIGH,
        auth_policy: &POLICY_B_SHA384,
        aes_key_bits: 256,
    },
    EkTemplate {
        name: "H-4",
        key: EkTemplateKey::Ecc { curve: Curve::P521 },
        name_alg: HashAlg::Sha512,
        object_attributes: ATTRIBUTES_HIGH,
        auth_policy: &POLICY_B_SHA512,
        aes_key_bits: 256,
    },
    EkTemplate {
        name: "H-6",
        key: EkTemplateKey::Rsa { bits: 3072 },
        name_alg: HashAlg::Sha384,
        object_attributes: ATTRIBUTES_HIGH,
        auth_policy: &POLICY_B_SHA384,
        aes_key_bits: 256,
    },
    EkTemplate {
        name: "H-7",
        key: EkTemplateKey::Rsa { bits: 4096 },
        name_alg: HashAlg::Sha384,
        object_attributes: ATTRIBUTES_HIGH,
        auth_policy: &POLICY_B_SHA384,
        aes_key_bits: 256,
    },
];

/// Why an EK public area is not a default EK template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EkTemplateError {
    /// No default template makes a key of this type and size.
    #[error("no default EK template for a {actual} key")]
    UnsupportedKey { actual: String },
    /// The key type matches `template`, but `field` differs from it.
    #[error("EK template {template}: {field} is {actual}, expected {expected}")]
    FieldMismatch {
        template: &'static str,
        field: &'static str,
        expected: String,
        actual: String,
    },
}

impl EkTemplate {
    /// The template for the key type and size of `public`, if any.
    pub fn for_key(public: &Public) -> Result<&'static EkTemplate, EkTemplateError> {
        let key = match (&public.key, public.object_type) {
            (PublicKey::Rsa { n, .. }, TPM_ALG_RSA) => EkTemplateKey::Rsa { bits: n.len() * 8 },
            (PublicKey::Ec { curve, .. }, TPM_ALG_ECC) => EkTemplateKey::Ecc { curve: *curve },
            (k, _) => {
                return Err(EkTemplateError::UnsupportedKey {
                    actual: format!("{k:?}"),
                })
            }
        };
        EK_TEMPLATES
            .iter()
            .find(|t| t.key == key)
            .ok_or_else(|| EkTemplateError::UnsupportedKey {
                actual: match key {
                    EkTemplateKey::Rsa { bits } => format!("RSA {bits}"),
                    EkTemplateKey::Ecc { curve } => format!("ECC {curve:?}"),
                },
            })
    }

    /// Check every non-key field of `public` against this template; the
    /// first that differs is the error. The RSA exponent is compared after
    /// the parser's normalisation (0 means 65537), so both encodings pass.
    pub fn check(&self, public: &Public) -> Result<(), EkTemplateError> {
        let mismatch = |field: &'static str, expected: String, actual: String| {
            Err(EkTemplateError::FieldMismatch {
                template: self.name,
                field,
                expected,
                actual,
            })
        };
        if public.name_alg != self.name_alg {
            return mismatch(
                "nameAlg",
                format!("{:?}", self.name_alg),
                format!("{:?}", public.name_alg),
            );
        }
        if public.object_attributes != self.object_attributes {
            return mismatch(
                "objectAttributes",
                format!("{:#010x}", self.object_attributes),
                format!("{:#010x}", public.object_attributes),
            );
        }
        if public.auth_policy != self.auth_policy {
            return mismatch(
                "authPolicy",
                hex::encode(self.auth_policy),
                hex::encode(&public.auth_policy),
            );
        }
        let symmetric = SymDef {
            alg: TPM_ALG_AES,
            key_bits: self.aes_key_bits,
            mode: TPM_ALG_CFB,
        };
        if public.symmetric != Some(symmetric) {
            return mismatch(
                "parameters.symmetric",
                format!("{symmetric:?}"),
                format!("{:?}", public.symmetric),
            );
        }
        if public.scheme.is_some() {
            return mismatch(
                "parameters.scheme",
                "TPM_ALG_NULL".to_owned(),
                format!("{:?}", public.scheme),
            );
        }
        if public.kdf.is_some() {
            return mismatch(
                "parameters.eccDetail.kdf",
                "TPM_ALG_NULL".to_owned(),
                format!("{:?}", public.kdf),
            );
        }
        if let PublicKey::Rsa { e, .. } = &public.key {
            let exponent = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            if exponent != 65537 {
                return mismatch(
                    "parameters.rsaDetail.exponent",
                    "0 (65537)".to_owned(),
                    exponent.to_string(),
                );
            }
        }
        Ok(())
    }
}

/// Check that `public` is an EK made from a TCG default EK template.
pub fn check_ek_template(public: &Public) -> Result<&'static EkTemplate, EkTemplateError> {
    let template = EkTemplate::for_key(public)?;
    template.check(public)?;
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::TPM_ALG_NULL;

    /// A `TPMT_PUBLIC` made from template L-1 with modulus `n` and the
    /// exponent written as `exponent`.
    fn l1_public(n: &[u8; 256], exponent: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_ALG_RSA.to_be_bytes());
        b.extend_from_slice(&0x000bu16.to_be_bytes());
        b.extend_from_slice(&ATTRIBUTES_LOW.to_be_bytes());
        b.extend_from_slice(&32u16.to_be_bytes());
        b.extend_from_slice(&POLICY_A_SHA256);
        b.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]); // AES-128-CFB
        b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // scheme
        b.extend_from_slice(&2048u16.to_be_bytes());
        b.extend_from_slice(&exponent.to_be_bytes());
        b.extend_from_slice(&256u16.to_be_bytes());
        b.extend_from_slice(n);
        b
    }

    /// A `TPMT_PUBLIC` made from template L-2 with point (`x`, `y`).
    fn l2_public(x: &[u8; 32], y: &[u8; 32]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_ALG_ECC.to_be_bytes());
        b.extend_from_slice(&0x000bu16.to_be_bytes());
        b.extend_from_slice(&ATTRIBUTES_LOW.to_be_bytes());
        b.extend_from_slice(&32u16.to_be_bytes());
        b.extend_from_slice(&POLICY_A_SHA256);
        b.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]); // AES-128-CFB
        b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // scheme
        b.extend_from_slice(&0x0003u16.to_be_bytes()); // NIST P-256
        b.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // kdf
        b.extend_from_slice(&32u16.to_be_bytes());
        b.extend_from_slice(x);
        b.extend_from_slice(&32u16.to_be_bytes());
        b.extend_from_slice(y);
        b
    }

    /// Offset of the first authPolicy byte in a `TPMT_PUBLIC`.
    const AUTH_POLICY_OFFSET: usize = 10;

    #[test]
    fn finding1_default_templates_pass() {
        let rsa = Public::parse(&l1_public(&[0xa5; 256], 0)).unwrap();
        assert_eq!(check_ek_template(&rsa).unwrap().name, "L-1");
        let rsa_65537 = Public::parse(&l1_public(&[0xa5; 256], 65537)).unwrap();
        assert_eq!(check_ek_template(&rsa_65537).unwrap().name, "L-1");
        let ecc = Public::parse(&l2_public(&[1; 32], &[2; 32])).unwrap();
        assert_eq!(check_ek_template(&ecc).unwrap().name, "L-2");
    }

    #[test]
    fn finding1_flipped_auth_policy_is_refused() {
        let mut b = l1_public(&[0xa5; 256], 0);
        b[AUTH_POLICY_OFFSET] ^= 0x01;
        let p = Public::parse(&b).unwrap();
        let mut flipped = POLICY_A_SHA256;
        flipped[0] ^= 0x01;
        assert_eq!(
            check_ek_template(&p),
            Err(EkTemplateError::FieldMismatch {
                template: "L-1",
                field: "authPolicy",
                expected: hex::encode(POLICY_A_SHA256),
                actual: hex::encode(flipped),
            })
        );
    }

    #[test]
    fn finding1_template_deviations_name_the_field() {
        let field_of = |b: &[u8]| match check_ek_template(&Public::parse(b).unwrap()) {
            Err(EkTemplateError::FieldMismatch { field, .. }) => field,
            other => panic!("expected a field mismatch, got {other:?}"),
        };
        // userWithAuth set on a low-range template.
        let mut b = l1_public(&[0xa5; 256], 0);
        b[7] |= 0x40;
        assert_eq!(field_of(&b), "objectAttributes");
        // nameAlg SHA-384.
        let mut b = l1_public(&[0xa5; 256], 0);
        b[3] = 0x0c;
        assert_eq!(field_of(&b), "nameAlg");
        // AES-256 instead of AES-128.
        let mut b = l1_public(&[0xa5; 256], 0);
        b[44] = 0x01;
        b[45] = 0x00;
        assert_eq!(field_of(&b), "parameters.symmetric");
        // Exponent 3.
        assert_eq!(
            field_of(&l1_public(&[0xa5; 256], 3)),
            "parameters.rsaDetail.exponent"
        );
        // A KDF on the ECC template.
        let mut b = l2_public(&[1; 32], &[2; 32]);
        let kdf = b.len() - 2 * 34 - 2;
        b.splice(kdf..kdf + 2, [0x00, 0x07, 0x00, 0x0b]);
        assert_eq!(field_of(&b), "parameters.eccDetail.kdf");
    }

    #[test]
    fn finding1_unsupported_key_size_is_refused() {
        let mut b = l1_public(&[0xa5; 256], 0);
        // Shrink to RSA 1024.
        b.truncate(b.len() - 256 - 2 - 4 - 2);
        b.extend_from_slice(&1024u16.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&128u16.to_be_bytes());
        b.extend_from_slice(&[0xa5; 128]);
        let p = Public::parse(&b).unwrap();
        assert_eq!(
            check_ek_template(&p),
            Err(EkTemplateError::UnsupportedKey {
                actual: "RSA 1024".to_owned()
            })
        );
    }
}
