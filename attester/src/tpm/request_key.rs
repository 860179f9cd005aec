//! The request-signing key: an ECC P-256 ECDSA-SHA256 signing key created
//! as a primary object in the NULL hierarchy. It is re-derived on demand
//! from the template, whose `unique` field holds a secret kept in the
//! attester's state (so no other TPM client can re-derive it), and it dies
//! with the NULL seed at the next TPM Reset or Restart: a reboot always needs
//! a fresh certification by the AK (TPM2_Certify).

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, Digest, EccParameter, EccPoint, EccScheme, HashScheme, HashcheckTicket, PublicBuilder,
    PublicEccParametersBuilder, SignatureScheme,
};
use tss_esapi::traits::Marshall;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use verifier_lib::crypto::HashAlg;

use super::{public_to_tpm2b, AkBlob, Ek, Tpm, TpmError};

/// Length of the secret `unique` value the key is derived with.
pub const REQUEST_KEY_SECRET_LEN: usize = 32;

/// TPM2_Certify of the request key by the AK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedRequestKey {
    /// The key's `TPM2B_PUBLIC`.
    pub key_public: Vec<u8>,
    /// Its TPM name (SHA-256 name algorithm).
    pub key_name: Vec<u8>,
    /// The marshalled `TPMS_ATTEST` (type certify).
    pub attest: Vec<u8>,
    /// The AK's `TPMT_SIGNATURE` over it.
    pub signature: Vec<u8>,
}

/// A signature by the request key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    /// Name of the key that signed.
    pub key_name: Vec<u8>,
    /// `TPMT_SIGNATURE` (ECDSA-SHA256) over SHA-256 of the message.
    pub signature: Vec<u8>,
}

impl Tpm {
    /// Create (re-derive) the request key: its handle (the caller flushes
    /// it), name and `TPM2B_PUBLIC`.
    fn load_request_key(
        &mut self,
        secret: &[u8],
    ) -> Result<(KeyHandle, Vec<u8>, Vec<u8>), TpmError> {
        let invalid = |reason| TpmError::InvalidInput {
            field: "request key secret",
            reason,
        };
        if secret.len() != REQUEST_KEY_SECRET_LEN {
            return Err(invalid("must be 32 bytes"));
        }
        let unique = EccPoint::new(
            EccParameter::try_from(secret.to_vec()).map_err(|_| invalid("too long"))?,
            EccParameter::default(),
        );
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_sensitive_data_origin(true)
            .with_user_with_auth(true)
            .with_sign_encrypt(true)
            .with_decrypt(false)
            .with_restricted(false)
            .build()
            .map_err(|source| TpmError::CreateRequestKey { source })?;
        let params = PublicEccParametersBuilder::new_unrestricted_signing_key(
            EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
            EccCurve::NistP256,
        )
        .build()
        .map_err(|source| TpmError::CreateRequestKey { source })?;
        let template = PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_ecc_parameters(params)
            .with_ecc_unique_identifier(unique)
            .build()
            .map_err(|source| TpmError::CreateRequestKey { source })?;
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Null, template, None, None, None, None)
            })
            .map_err(|source| TpmError::CreateRequestKey { source })?;
        let tpmt = created
            .out_public
            .marshall()
            .map_err(|source| TpmError::Marshal {
                what: "request key public area",
                source,
            })?;
        let mut name = HashAlg::Sha256.tpm_alg_id().to_be_bytes().to_vec();
        name.extend_from_slice(&HashAlg::Sha256.digest(&tpmt));
        let public = match public_to_tpm2b(&created.out_public, "request key public area") {
            Ok(p) => p,
            Err(e) => {
                let _ = self.flush_request_key(created.key_handle);
                return Err(e);
            }
        };
        Ok((created.key_handle, name, public))
    }

    fn flush_request_key(&mut self, handle: KeyHandle) -> Result<(), TpmError> {
        self.ctx
            .flush_context(handle.into())
            .map_err(|source| TpmError::Flush {
                what: "request key",
                source,
            })
    }

    /// Certify the request key with the AK (TPM2_Certify), `nonce` as
    /// qualifying data.
    pub fn certify_request_key(
        &mut self,
        ek: &Ek,
        ak: &AkBlob,
        secret: &[u8],
        nonce: &[u8],
    ) -> Result<CertifiedRequestKey, TpmError> {
        let data = Data::try_from(nonce.to_vec()).map_err(|_| TpmError::InvalidInput {
            field: "nonce",
            reason: "longer than 64 bytes (TPM2B_DATA)",
        })?;
        let (key, key_name, key_public) = self.load_request_key(secret)?;
        let ak_handle = match self.load_ak(ek, ak) {
            Ok(h) => h,
            Err(e) => {
                let _ = self.flush_request_key(key);
                return Err(e);
            }
        };
        let certified = self
            .ctx
            // Both objects have empty auth values.
            .execute_with_sessions(
                (
                    Some(AuthSession::Password),
                    Some(AuthSession::Password),
                    None,
                ),
                |c| c.certify(key.into(), ak_handle, data, SignatureScheme::Null),
            )
            .map_err(|source| TpmError::Certify { source });
        let flushed_ak = self.ctx.flush_context(ak_handle.into());
        let flushed_key = self.flush_request_key(key);
        let (attest, signature) = certified?;
        flushed_ak.map_err(|source| TpmError::Flush {
            what: "attestation key",
            source,
        })?;
        flushed_key?;
        Ok(CertifiedRequestKey {
            key_public,
            key_name,
            attest: attest.marshall().map_err(|source| TpmError::Marshal {
                what: "TPMS_ATTEST",
                source,
            })?,
            signature: signature.marshall().map_err(|source| TpmError::Marshal {
                what: "TPMT_SIGNATURE",
                source,
            })?,
        })
    }

    /// Sign SHA-256(`message`) with the request key (ECDSA-SHA256).
    pub fn sign_request(
        &mut self,
        secret: &[u8],
        message: &[u8],
    ) -> Result<RequestSignature, TpmError> {
        let digest = Digest::try_from(HashAlg::Sha256.digest(message)).map_err(|_| {
            TpmError::InvalidInput {
                field: "message digest",
                reason: "not a SHA-256 digest",
            }
        })?;
        // An unrestricted key needs no proof that the TPM hashed the message.
        let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(|source| TpmError::Sign { source })?;
        let (key, key_name, _) = self.load_request_key(secret)?;
        let signed = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.sign(
                    key,
                    digest,
                    SignatureScheme::EcDsa {
                        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
                    },
                    ticket,
                )
            })
            .map_err(|source| TpmError::Sign { source });
        let flushed = self.flush_request_key(key);
        let signature = signed?;
        flushed?;
        Ok(RequestSignature {
            key_name,
            signature: signature.marshall().map_err(|source| TpmError::Marshal {
                what: "TPMT_SIGNATURE",
                source,
            })?,
        })
    }
}
