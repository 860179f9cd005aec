//! A software TPM identity per simulated host: an ECC P-256 EK (template
//! L-2) certified by a test CA, the TPM side of credential activation, and
//! an ECC P-256 AK that signs `TPMS_ATTEST` quotes over PCRs 0–7, which a
//! 100-event TCG event log replays to.
//!
//! Everything a TPM would encode is encoded here from the specifications
//! (`marshal`, `ek_cert`, `eventlog`, `activation`), never with
//! verifier-lib's parsers: a test checks the quotes with `tpm2_checkquote`
//! and the logs with `tpm2_eventlog`. This is evidence of nothing real; it
//! exists to load a broker.

pub mod activation;
pub mod ek_cert;
pub mod eventlog;
pub mod identities;
pub mod marshal;

use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

pub use eventlog::BootLog;
pub use marshal::ClockInfo;

/// Why the software TPM could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoftTpmError {
    /// A key operation of aws-lc failed (`step` names it).
    #[error("software TPM: {step} failed")]
    Crypto { step: &'static str },
    /// Credential activation refused the broker's credential.
    #[error("credential activation: {step}")]
    Activation { step: &'static str },
    /// Input bytes are not the structure they should be.
    #[error("{field}: expected {expected}, got {actual}")]
    Malformed {
        field: &'static str,
        expected: String,
        actual: String,
    },
    /// Reading or writing the identity cache failed.
    #[error("identity cache {path}: {reason}")]
    Cache { path: String, reason: String },
}

/// The private parts of one simulated TPM, as cached on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmSecrets {
    /// EK private scalar (big-endian, 32 bytes).
    pub ek_scalar: [u8; 32],
    /// AK private scalar (big-endian, 32 bytes).
    pub ak_scalar: [u8; 32],
    /// AK public point (uncompressed SEC1, 65 bytes).
    pub ak_point: [u8; 65],
}

impl TpmSecrets {
    /// Fresh EK and AK keys.
    pub fn generate() -> Result<TpmSecrets, SoftTpmError> {
        use aws_lc_rs::encoding::AsBigEndian;
        let ek = agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| SoftTpmError::Crypto {
            step: "EK generation",
        })?;
        let ek_be: aws_lc_rs::encoding::EcPrivateKeyBin<'_> = ek
            .as_be_bytes()
            .map_err(|_| SoftTpmError::Crypto { step: "EK export" })?;
        let ak = agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| SoftTpmError::Crypto {
            step: "AK generation",
        })?;
        let ak_be: aws_lc_rs::encoding::EcPrivateKeyBin<'_> = ak
            .as_be_bytes()
            .map_err(|_| SoftTpmError::Crypto { step: "AK export" })?;
        let ak_point = ak.compute_public_key().map_err(|_| SoftTpmError::Crypto {
            step: "AK public key",
        })?;
        Ok(TpmSecrets {
            ek_scalar: fixed(ek_be.as_ref(), "EK scalar")?,
            ak_scalar: fixed(ak_be.as_ref(), "AK scalar")?,
            ak_point: fixed(ak_point.as_ref(), "AK point")?,
        })
    }
}

fn fixed<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], SoftTpmError> {
    bytes.try_into().map_err(|_| SoftTpmError::Malformed {
        field,
        expected: format!("{N} bytes"),
        actual: format!("{} bytes", bytes.len()),
    })
}

/// One simulated TPM with its keys loaded.
#[derive(Debug)]
pub struct SoftTpm {
    ek: agreement::PrivateKey,
    ek_point: Vec<u8>,
    /// `TPMT_PUBLIC` of the EK.
    pub ek_public: Vec<u8>,
    ak: EcdsaKeyPair,
    /// `TPMT_PUBLIC` of the AK.
    pub ak_public: Vec<u8>,
    /// The AK's name (`TPM2B_NAME` contents).
    pub ak_name: Vec<u8>,
}

/// A quote as `TPM2_Quote` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
}

/// A request-signing key (TPM2_Create of an unrestricted ECDSA P-256 key):
/// it signs token requests between attestations once the AK certified it.
#[derive(Debug)]
pub struct RequestKey {
    key: EcdsaKeyPair,
    /// `TPMT_PUBLIC`.
    pub public: Vec<u8>,
    /// `TPM2B_NAME` contents.
    pub name: Vec<u8>,
}

impl RequestKey {
    /// A new key.
    pub fn generate() -> Result<RequestKey, SoftTpmError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| {
            SoftTpmError::Crypto {
                step: "request key generation",
            }
        })?;
        let (x, y) = xy(key.public_key().as_ref())?;
        let public = marshal::request_key_public(x, y);
        let name = marshal::name(&public);
        Ok(RequestKey { key, public, name })
    }

    /// TPM2_Sign of SHA-256(`message`): the `TPMT_SIGNATURE`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SoftTpmError> {
        let sig =
            self.key
                .sign(&SystemRandom::new(), message)
                .map_err(|_| SoftTpmError::Crypto {
                    step: "request signature",
                })?;
        Ok(marshal::ecdsa_signature(sig.as_ref()))
    }
}

/// The firmware version every simulated TPM reports.
const FIRMWARE_VERSION: u64 = 0x0001_0002_0003_0004;

impl SoftTpm {
    /// Load the keys of `secrets`.
    pub fn load(secrets: &TpmSecrets) -> Result<SoftTpm, SoftTpmError> {
        let ek = agreement::PrivateKey::from_private_key(&ECDH_P256, &secrets.ek_scalar)
            .map_err(|_| SoftTpmError::Crypto { step: "EK load" })?;
        let ek_point = ek
            .compute_public_key()
            .map_err(|_| SoftTpmError::Crypto {
                step: "EK public key",
            })?
            .as_ref()
            .to_vec();
        let ak = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &secrets.ak_scalar,
            &secrets.ak_point,
        )
        .map_err(|_| SoftTpmError::Crypto { step: "AK load" })?;
        let (ek_x, ek_y) = xy(&ek_point)?;
        let ek_public = marshal::ek_public(ek_x, ek_y);
        let (ak_x, ak_y) = xy(ak.public_key().as_ref())?;
        let ak_public = marshal::ak_public(ak_x, ak_y);
        let ak_name = marshal::name(&ak_public);
        Ok(SoftTpm {
            ek,
            ek_point,
            ek_public,
            ak,
            ak_public,
            ak_name,
        })
    }

    /// The EK public point (uncompressed SEC1), what its certificate holds.
    pub fn ek_point(&self) -> &[u8] {
        &self.ek_point
    }

    /// TPM2_ActivateCredential: the secret of a credential made for this
    /// TPM's EK and AK.
    pub fn activate_credential(
        &self,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, SoftTpmError> {
        let (ek_x, _) = xy(&self.ek_point)?;
        activation::activate_credential(&self.ek, ek_x, &self.ak_name, id_object, encrypted_secret)
    }

    /// TPM2_Quote over PCRs 0–7 of `log` with `extra_data` as qualifying
    /// data, signed by the AK (ECDSA over SHA-256 of the `TPMS_ATTEST`).
    pub fn quote(
        &self,
        extra_data: &[u8],
        clock: ClockInfo,
        log: &BootLog,
    ) -> Result<Quote, SoftTpmError> {
        let attest = marshal::quote_attest(
            &self.ak_name,
            extra_data,
            clock,
            FIRMWARE_VERSION,
            &eventlog::LOG_PCRS,
            &log.pcr_digest(),
        );
        let sig =
            self.ak
                .sign(&SystemRandom::new(), &attest)
                .map_err(|_| SoftTpmError::Crypto {
                    step: "quote signature",
                })?;
        Ok(Quote {
            signature: marshal::ecdsa_signature(sig.as_ref()),
            attest,
        })
    }
}

impl SoftTpm {
    /// TPM2_Certify of `key` by the AK with `extra_data` as qualifying data.
    pub fn certify(
        &self,
        key: &RequestKey,
        extra_data: &[u8],
        clock: ClockInfo,
    ) -> Result<Quote, SoftTpmError> {
        let attest = marshal::certify_attest(
            &self.ak_name,
            extra_data,
            clock,
            FIRMWARE_VERSION,
            &key.name,
        );
        let sig =
            self.ak
                .sign(&SystemRandom::new(), &attest)
                .map_err(|_| SoftTpmError::Crypto {
                    step: "certification signature",
                })?;
        Ok(Quote {
            signature: marshal::ecdsa_signature(sig.as_ref()),
            attest,
        })
    }
}

/// The x and y coordinates of an uncompressed P-256 point.
fn xy(point: &[u8]) -> Result<(&[u8], &[u8]), SoftTpmError> {
    match point {
        [0x04, rest @ ..] if rest.len() == 64 => Ok(rest.split_at(32)),
        _ => Err(SoftTpmError::Malformed {
            field: "P-256 point",
            expected: "65 bytes, uncompressed (0x04)".into(),
            actual: format!("{} bytes", point.len()),
        }),
    }
}
