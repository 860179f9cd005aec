//! Endorsement keys and their certificates.

use tss_esapi::abstraction::{ek, nv, AsymmetricAlgorithmSelection, DefaultKey};
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::NvAuth;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::CapabilityData;

use super::{public_to_tpm2b, Ek, EkAlg, Tpm, TpmError};

/// TCG EK credential profile: EK certificate chain indices.
const EK_CHAIN_FIRST: u32 = 0x01c0_0100;
const EK_CHAIN_LAST: u32 = 0x01c0_01ff;
/// Order in which [`Tpm::detect_ek_alg`] prefers EK types.
const EK_PREFERENCE: [EkAlg; 3] = [EkAlg::Rsa2048, EkAlg::EccP256, EkAlg::EccP384];

impl EkAlg {
    fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            EkAlg::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkAlg::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            EkAlg::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
        }
    }
}

impl Tpm {
    /// The raw contents of the EK certificate NV index for `alg` (DER,
    /// possibly followed by padding), or `None` if the index is not defined.
    pub fn ek_certificate(&mut self, alg: EkAlg) -> Result<Option<Vec<u8>>, TpmError> {
        let index = alg.certificate_nv_index();
        if !self.nv_indices(index, index)?.contains(&index) {
            return Ok(None);
        }
        self.read_nv(index).map(Some)
    }

    /// EK chain certificates from NV 0x01c00100..=0x01c001ff (TCG EK
    /// profile), in index order; each entry is one index's raw contents
    /// (one or more concatenated DER certificates). Empty if there are none.
    pub fn ek_chain_certificates(&mut self) -> Result<Vec<Vec<u8>>, TpmError> {
        self.nv_indices(EK_CHAIN_FIRST, EK_CHAIN_LAST)?
            .into_iter()
            .map(|index| self.read_nv(index))
            .collect()
    }

    /// The EK type that has a certificate: RSA 2048, else ECC P-256, else
    /// ECC P-384.
    pub fn detect_ek_alg(&mut self) -> Result<EkAlg, TpmError> {
        let first = EkAlg::Rsa2048.certificate_nv_index();
        let last = EkAlg::EccP384.certificate_nv_index();
        let defined = self.nv_indices(first, last)?;
        EK_PREFERENCE
            .into_iter()
            .find(|alg| defined.contains(&alg.certificate_nv_index()))
            .ok_or(TpmError::NoEkCertificate)
    }

    /// Create (re-derive) the EK from the TCG default template for `alg`;
    /// the result matches the certified EK.
    pub fn create_ek(&mut self, alg: EkAlg) -> Result<Ek, TpmError> {
        let handle = ek::create_ek_object_2(&mut self.ctx, alg.selection(), DefaultKey)
            .map_err(|source| TpmError::CreateEk { alg, source })?;
        let public = self
            .ctx
            .execute_without_session(|c| c.read_public(handle))
            .map(|(public, _, _)| public);
        let public = match public {
            Ok(p) => p,
            Err(source) => {
                let _ = self.ctx.flush_context(handle.into());
                return Err(TpmError::CreateEk { alg, source });
            }
        };
        match public_to_tpm2b(&public, "EK public area") {
            Ok(public_tpm2b) => Ok(Ek {
                alg,
                handle,
                public_tpm2b,
            }),
            Err(e) => {
                let _ = self.ctx.flush_context(handle.into());
                Err(e)
            }
        }
    }

    /// Flush an EK created by [`Tpm::create_ek`].
    pub fn flush_ek(&mut self, ek: Ek) -> Result<(), TpmError> {
        self.ctx
            .flush_context(ek.handle.into())
            .map_err(|source| TpmError::Flush {
                what: "endorsement key",
                source,
            })
    }

    /// Defined NV indices in `first..=last`.
    fn nv_indices(&mut self, first: u32, last: u32) -> Result<Vec<u32>, TpmError> {
        let err = |source| TpmError::ListNv {
            first,
            last,
            source,
        };
        let mut found = Vec::new();
        let mut next = first;
        loop {
            let (data, more) = self
                .ctx
                .execute_without_session(|c| {
                    c.get_capability(
                        CapabilityType::Handles,
                        next,
                        (last - next).saturating_add(1),
                    )
                })
                .map_err(err)?;
            let CapabilityData::Handles(handles) = data else {
                break;
            };
            let mut max_seen = None;
            for h in handles.iter() {
                let value = u32::from(*h);
                if (first..=last).contains(&value) {
                    found.push(value);
                }
                max_seen = Some(value);
            }
            match (more, max_seen) {
                (true, Some(m)) if m < last => next = m + 1,
                _ => break,
            }
        }
        Ok(found)
    }

    /// Read a whole NV index authorized by its own (empty) auth value.
    fn read_nv(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        let err = |source| TpmError::ReadEkCert { index, source };
        let tpm_handle = NvIndexTpmHandle::new(index).map_err(err)?;
        let mut object: ObjectHandle = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
            .map_err(err)?;
        let result = self
            .read_nv_handle(NvIndexHandle::from(object))
            .map_err(err);
        let _ = self.ctx.tr_close(&mut object);
        result
    }

    fn read_nv_handle(&mut self, handle: NvIndexHandle) -> tss_esapi::Result<Vec<u8>> {
        let (public, _) = self
            .ctx
            .execute_without_session(|c| c.nv_read_public(handle))?;
        let size = public.data_size();
        let chunk_max = nv::max_nv_buffer_size(&mut self.ctx)?.max(1);
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let want = chunk_max.min(size - out.len());
            let (Ok(want), Ok(offset)) = (u16::try_from(want), u16::try_from(out.len())) else {
                return Err(tss_esapi::Error::WrapperError(
                    tss_esapi::WrapperErrorKind::WrongParamSize,
                ));
            };
            let chunk = self
                .ctx
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.nv_read(NvAuth::NvIndex(handle), handle, want, offset)
                })?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(chunk.value());
        }
        Ok(out)
    }
}
