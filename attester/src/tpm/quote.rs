//! Quotes, PCR reads and PCR extends.

use std::collections::BTreeMap;

use tss_esapi::handles::{KeyHandle, PcrHandle};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, Digest, DigestValues, PcrSelectSize, PcrSelectionList, PcrSelectionListBuilder, PcrSlot,
    SignatureScheme,
};
use tss_esapi::traits::Marshall;
use verifier_lib::crypto::HashAlg;

use super::{hashing_algorithm, AkBlob, Ek, QuoteEvidence, Tpm, TpmError};

/// How often a quote is retried when PCRs change underneath it.
const QUOTE_ATTEMPTS: usize = 5;
/// Highest PCR index a 3-octet selection can name.
const MAX_PCR: u8 = 23;

/// PCR values by bank and index.
type PcrValues = BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>;

impl Tpm {
    /// Quote the selected PCRs with the AK (its own signing scheme), with
    /// `nonce` as qualifying data, and read the PCR values it covers. PCRs
    /// are read before and after the quote; if they changed, it is redone.
    pub fn quote(
        &mut self,
        ek: &Ek,
        ak: &AkBlob,
        nonce: &[u8],
        selection: &[(HashAlg, Vec<u8>)],
    ) -> Result<QuoteEvidence, TpmError> {
        let data = Data::try_from(nonce.to_vec()).map_err(|_| TpmError::InvalidInput {
            field: "nonce",
            reason: "longer than 64 bytes (TPM2B_DATA)",
        })?;
        let list = selection_list(selection)?;
        let ak_handle = self.load_ak(ek, ak)?;
        let result = self.quote_loaded(ak_handle, data, &list);
        let flushed = self.ctx.flush_context(ak_handle.into());
        let out = result?;
        flushed.map_err(|source| TpmError::Flush {
            what: "attestation key",
            source,
        })?;
        Ok(out)
    }

    fn quote_loaded(
        &mut self,
        ak_handle: KeyHandle,
        data: Data,
        list: &PcrSelectionList,
    ) -> Result<QuoteEvidence, TpmError> {
        for _ in 0..QUOTE_ATTEMPTS {
            let before = self.read_pcrs(list)?;
            let (attest, signature) = self
                .ctx
                // The AK's auth value is empty: a password session is
                // enough, and the quote's outputs are public anyway.
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.quote(ak_handle, data.clone(), SignatureScheme::Null, list.clone())
                })
                .map_err(|source| TpmError::Quote { source })?;
            let after = self.read_pcrs(list)?;
            if before == after {
                return Ok(QuoteEvidence {
                    attest: attest.marshall().map_err(|source| TpmError::Marshal {
                        what: "TPMS_ATTEST",
                        source,
                    })?,
                    signature: signature.marshall().map_err(|source| TpmError::Marshal {
                        what: "TPMT_SIGNATURE",
                        source,
                    })?,
                    pcrs: after,
                });
            }
        }
        Err(TpmError::PcrsChanging {
            attempts: QUOTE_ATTEMPTS,
        })
    }

    /// Read PCR values (the TPM returns at most 8 per call, so this loops).
    pub fn pcr_read(&mut self, selection: &[(HashAlg, Vec<u8>)]) -> Result<PcrValues, TpmError> {
        let list = selection_list(selection)?;
        self.read_pcrs(&list)
    }

    fn read_pcrs(&mut self, list: &PcrSelectionList) -> Result<PcrValues, TpmError> {
        let err = |source| TpmError::PcrRead { source };
        let mut remaining = list.clone();
        let mut out = PcrValues::new();
        while !remaining.is_empty() {
            let (_, read, digests) = self
                .ctx
                .execute_without_session(|c| c.pcr_read(remaining.clone()))
                .map_err(err)?;
            if digests.value().is_empty() {
                // The TPM returned nothing for what is left: those banks or
                // PCRs are not allocated.
                return Err(TpmError::InvalidInput {
                    field: "PCR selection",
                    reason: "selects a bank or PCR the TPM does not have",
                });
            }
            let mut values = digests.value().iter();
            for sel in read.get_selections() {
                let alg = HashAlg::from_tpm_alg_id(sel.hashing_algorithm().into()).ok_or(
                    TpmError::InvalidInput {
                        field: "PCR bank",
                        reason: "not a hash Writ supports",
                    },
                )?;
                for slot in sel.selected() {
                    let index = slot_index(slot);
                    let value = values.next().ok_or(TpmError::InvalidInput {
                        field: "PCR read response",
                        reason: "fewer digests than selected PCRs",
                    })?;
                    out.entry(alg)
                        .or_default()
                        .insert(index, value.value().to_vec());
                }
            }
            remaining.subtract(&read).map_err(err)?;
        }
        Ok(out)
    }

    /// Extend `digest` into PCR `pcr` of `bank` (PCR auth is empty).
    pub fn pcr_extend(&mut self, pcr: u8, bank: HashAlg, digest: &[u8]) -> Result<(), TpmError> {
        if digest.len() != bank.output_len() {
            return Err(TpmError::InvalidInput {
                field: "PCR extend digest",
                reason: "length differs from the bank's hash size",
            });
        }
        let err = |source| TpmError::PcrExtend { pcr, source };
        let handle = PcrHandle::try_from(u32::from(pcr)).map_err(err)?;
        let mut values = DigestValues::new();
        values.set(
            hashing_algorithm(bank)?,
            Digest::try_from(digest.to_vec()).map_err(err)?,
        );
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.pcr_extend(handle, values)
            })
            .map_err(err)
    }
}

/// Index of a PCR slot bit (Slot5 = 1 << 5).
fn slot_index(slot: PcrSlot) -> u8 {
    // trailing_zeros of a u32 is at most 32, which always fits a u8.
    u8::try_from(u32::from(slot).trailing_zeros()).unwrap_or(u8::MAX)
}

fn selection_list(selection: &[(HashAlg, Vec<u8>)]) -> Result<PcrSelectionList, TpmError> {
    let mut builder =
        PcrSelectionListBuilder::new().with_size_of_select(PcrSelectSize::ThreeOctets);
    for (bank, pcrs) in selection {
        let mut slots = Vec::with_capacity(pcrs.len());
        for &pcr in pcrs {
            if pcr > MAX_PCR {
                return Err(TpmError::InvalidInput {
                    field: "PCR index",
                    reason: "above 23",
                });
            }
            let slot = PcrSlot::try_from(1u32 << pcr).map_err(|_| TpmError::InvalidInput {
                field: "PCR index",
                reason: "not a PCR slot",
            })?;
            slots.push(slot);
        }
        builder = builder.with_selection(hashing_algorithm(*bank)?, &slots);
    }
    builder.build().map_err(|_| TpmError::InvalidInput {
        field: "PCR selection",
        reason: "rejected by tss-esapi (duplicate bank or empty)",
    })
}
