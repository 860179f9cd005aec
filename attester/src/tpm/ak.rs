//! Attestation keys under the EK, and credential activation.

use tss_esapi::abstraction::{ak, AsymmetricAlgorithmSelection, DefaultKey};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, DigestList, EncryptedSecret, IdObject, Private, SymmetricDefinition,
};
use tss_esapi::traits::Marshall;
use verifier_lib::crypto::HashAlg;

use super::{public_from_tpm2b, public_to_tpm2b, AkAlg, AkBlob, Ek, EkAlg, Tpm, TpmError};

/// TCG EK credential profile 2.5, B.6: PolicyA (PolicySecret(endorsement))
/// and PolicyC (PolicyAuthorizeNV) with SHA-384. The high-range EK's policy
/// is PolicyOR of the two.
const POLICY_A_SHA384: [u8; 48] = [
    0x8b, 0xbf, 0x22, 0x66, 0x53, 0x7c, 0x17, 0x1c, 0xb5, 0x6e, 0x40, 0x3c, 0x4d, 0xc1, 0xd4, 0xb6,
    0x4f, 0x43, 0x26, 0x11, 0xdc, 0x38, 0x6e, 0x6f, 0x53, 0x20, 0x50, 0xc3, 0x27, 0x8c, 0x93, 0x0e,
    0x14, 0x3e, 0x8b, 0xb1, 0x13, 0x38, 0x24, 0xcc, 0xb4, 0x31, 0x05, 0x38, 0x71, 0xc6, 0xdb, 0x53,
];
const POLICY_C_SHA384: [u8; 48] = [
    0xd6, 0x03, 0x2c, 0xe6, 0x1f, 0x2f, 0xb3, 0xc2, 0x40, 0xeb, 0x3c, 0xf6, 0xa3, 0x32, 0x37, 0xef,
    0x2b, 0x6a, 0x16, 0xf4, 0x29, 0x3c, 0x22, 0xb4, 0x55, 0xe2, 0x61, 0xcf, 0xfd, 0x21, 0x7a, 0xd5,
    0xb4, 0x94, 0x7c, 0x2d, 0x73, 0xe6, 0x30, 0x05, 0xee, 0xd2, 0xdc, 0x2b, 0x35, 0x93, 0xd1, 0x65,
];

impl AkAlg {
    fn selection(self) -> (AsymmetricAlgorithmSelection, SignatureSchemeAlgorithm) {
        match self {
            AkAlg::EccP256 => (
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
            ),
            AkAlg::Rsa2048 => (
                AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                SignatureSchemeAlgorithm::RsaSsa,
            ),
        }
    }
}

impl EkAlg {
    /// nameAlg of the EK template, which its policy sessions must use.
    fn name_alg(self) -> HashingAlgorithm {
        match self {
            EkAlg::Rsa2048 | EkAlg::EccP256 => HashingAlgorithm::Sha256,
            EkAlg::EccP384 => HashingAlgorithm::Sha384,
        }
    }

    /// Branches of the EK's PolicyOR, if its policy is one (high range).
    fn policy_or_branches(self) -> Option<[&'static [u8]; 2]> {
        match self {
            EkAlg::Rsa2048 | EkAlg::EccP256 => None,
            EkAlg::EccP384 => Some([&POLICY_A_SHA384, &POLICY_C_SHA384]),
        }
    }
}

impl Tpm {
    /// Create a restricted signing key (SHA-256) under the EK.
    pub fn create_ak(&mut self, ek: &Ek, alg: AkAlg) -> Result<AkBlob, TpmError> {
        let (key_alg, scheme) = alg.selection();
        let created = ak::create_ak_2(
            &mut self.ctx,
            ek.handle,
            HashingAlgorithm::Sha256,
            key_alg,
            scheme,
            None,
            DefaultKey,
        )
        .map_err(|source| TpmError::CreateAk { alg, source })?;
        let tpmt = created
            .out_public
            .marshall()
            .map_err(|source| TpmError::Marshal {
                what: "AK public area",
                source,
            })?;
        let mut name = HashAlg::Sha256.tpm_alg_id().to_be_bytes().to_vec();
        name.extend_from_slice(&HashAlg::Sha256.digest(&tpmt));
        Ok(AkBlob {
            alg,
            public_tpm2b: public_to_tpm2b(&created.out_public, "AK public area")?,
            private: created.out_private.value().to_vec(),
            name,
        })
    }

    /// Load a stored AK under the EK; the caller must flush the handle.
    /// (Like `tss_esapi::abstraction::ak::load_ak`, with fewer round trips:
    /// the EK's policy is known from its template.)
    pub(super) fn load_ak(&mut self, ek: &Ek, blob: &AkBlob) -> Result<KeyHandle, TpmError> {
        let public = public_from_tpm2b(&blob.public_tpm2b, "AK public area")?;
        let private =
            Private::try_from(blob.private.clone()).map_err(|source| TpmError::Marshal {
                what: "AK private area",
                source,
            })?;
        let policy =
            self.start_session(SessionType::Policy, ek.alg.name_alg(), false, "EK policy")?;
        let loaded = self.satisfy_ek_policy(ek.alg, policy).and_then(|()| {
            self.ctx
                .execute_with_session(Some(policy), |c| c.load(ek.handle, private, public))
                .map_err(|source| TpmError::LoadAk { source })
        });
        let flushed = self.ctx.flush_context(SessionHandle::from(policy).into());
        let handle = loaded?;
        if let Err(source) = flushed {
            let _ = self.ctx.flush_context(handle.into());
            return Err(TpmError::Flush {
                what: "EK policy session",
                source,
            });
        }
        Ok(handle)
    }

    /// TPM2_ActivateCredential: recover the secret a verifier bound to
    /// `ak`'s name and encrypted to `ek`. `id_object` and `encrypted_secret`
    /// are the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents (without
    /// their u16 size prefixes).
    pub fn activate_credential(
        &mut self,
        ek: &Ek,
        ak: &AkBlob,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let id_object =
            IdObject::try_from(id_object.to_vec()).map_err(|source| TpmError::Marshal {
                what: "credential blob (TPM2B_ID_OBJECT)",
                source,
            })?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec()).map_err(|source| {
            TpmError::Marshal {
                what: "encrypted secret (TPM2B_ENCRYPTED_SECRET)",
                source,
            }
        })?;
        let ak_handle = self.load_ak(ek, ak)?;
        let result = self.activate_loaded(ek, ak_handle, id_object, secret);
        let flushed = self.ctx.flush_context(ak_handle.into());
        let out = result?;
        flushed.map_err(|source| TpmError::Flush {
            what: "attestation key",
            source,
        })?;
        Ok(out)
    }

    fn activate_loaded(
        &mut self,
        ek: &Ek,
        ak_handle: KeyHandle,
        id_object: IdObject,
        secret: EncryptedSecret,
    ) -> Result<Vec<u8>, TpmError> {
        // Session 1 authorizes the AK (empty auth, userWithAuth) and
        // encrypts the returned secret; session 2 satisfies the EK's policy.
        // ESYS allows only one session with parameter encryption.
        let hmac =
            self.start_session(SessionType::Hmac, HashingAlgorithm::Sha256, true, "AK HMAC")?;
        let policy =
            match self.start_session(SessionType::Policy, ek.alg.name_alg(), false, "EK policy") {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.ctx.flush_context(SessionHandle::from(hmac).into());
                    return Err(e);
                }
            };
        let result = self
            .satisfy_ek_policy(ek.alg, policy)
            .and_then(|()| {
                self.ctx
                    .execute_with_sessions((Some(hmac), Some(policy), None), |c| {
                        c.activate_credential(ak_handle, ek.handle, id_object, secret)
                    })
                    .map_err(|source| TpmError::ActivateCredential { source })
            })
            .map(|digest| digest.value().to_vec());
        let flush_hmac = self.ctx.flush_context(SessionHandle::from(hmac).into());
        let flush_policy = self.ctx.flush_context(SessionHandle::from(policy).into());
        let out = result?;
        flush_hmac
            .and(flush_policy)
            .map_err(|source| TpmError::Flush {
                what: "credential activation sessions",
                source,
            })?;
        Ok(out)
    }

    /// PolicySecret(endorsement), then PolicyOR for high-range EKs.
    fn satisfy_ek_policy(&mut self, alg: EkAlg, session: AuthSession) -> Result<(), TpmError> {
        let err = |source| TpmError::Session {
            purpose: "EK policy",
            source,
        };
        let policy = PolicySession::try_from(session).map_err(err)?;
        // The endorsement hierarchy's auth is empty: a password session.
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(err)?;
        if let Some(branches) = alg.policy_or_branches() {
            let mut list = DigestList::new();
            for b in branches {
                list.add(Digest::try_from(b).map_err(err)?).map_err(err)?;
            }
            self.ctx
                .execute_without_session(|c| c.policy_or(policy, list))
                .map_err(err)?;
        }
        Ok(())
    }

    /// An unsalted, unbound session, with parameter encryption both ways if
    /// `encrypt`.
    fn start_session(
        &mut self,
        kind: SessionType,
        hash: HashingAlgorithm,
        encrypt: bool,
        purpose: &'static str,
    ) -> Result<AuthSession, TpmError> {
        let err = |source| TpmError::Session { purpose, source };
        let session = self
            .ctx
            .execute_without_session(|c| {
                c.start_auth_session(
                    None,
                    None,
                    None,
                    kind,
                    SymmetricDefinition::AES_128_CFB,
                    hash,
                )
            })
            .map_err(err)?
            .ok_or(TpmError::Session {
                purpose,
                source: tss_esapi::Error::WrapperError(
                    tss_esapi::WrapperErrorKind::WrongValueFromTpm,
                ),
            })?;
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_decrypt(encrypt)
            .with_encrypt(encrypt)
            .build();
        if let Err(source) = self.ctx.tr_sess_set_attributes(session, attrs, mask) {
            let _ = self.ctx.flush_context(SessionHandle::from(session).into());
            return Err(err(source));
        }
        Ok(session)
    }
}
