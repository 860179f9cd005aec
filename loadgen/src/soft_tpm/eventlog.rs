//! A TCG PC Client crypto-agile event log (TCG PC Client Platform Firmware
//! Profile, §10) with one SHA-256 bank, and the PCR values it replays to.
//!
//! The log is the header event (`TCG_PCR_EVENT` carrying
//! `TCG_EfiSpecIDEvent`, "Spec ID Event03") followed by `measured` events
//! (`TCG_PCR_EVENT2`, little-endian): `EV_S_CRTM_VERSION` and firmware blobs
//! in PCR 0, `EV_EFI_ACTION` strings spread over PCRs 0–7, and one
//! `EV_SEPARATOR` per PCR 0–7 at the end, as firmware writes them.

use sha2::{Digest, Sha256};

use super::marshal::TPM_ALG_SHA256;

/// `EV_NO_ACTION`.
const EV_NO_ACTION: u32 = 0x03;
/// `EV_SEPARATOR`.
const EV_SEPARATOR: u32 = 0x04;
/// `EV_S_CRTM_VERSION`.
const EV_S_CRTM_VERSION: u32 = 0x08;
/// `EV_EFI_ACTION`.
const EV_EFI_ACTION: u32 = 0x8000_0007;
/// `EV_EFI_PLATFORM_FIRMWARE_BLOB`.
const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
/// The PCRs the log extends (and a quote must cover).
pub const LOG_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// A boot's event log and the SHA-256 PCR values it replays to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLog {
    /// The log as `binary_bios_measurements` holds it.
    pub bytes: Vec<u8>,
    /// SHA-256 values of PCRs 0–7 after replaying the log.
    pub pcrs: [[u8; 32]; 8],
    /// Measured events (the header not counted).
    pub events: usize,
}

impl BootLog {
    /// A log of `measured` events (at least the 8 separators; fewer is
    /// raised to 8). `firmware` varies the measured contents, so two
    /// firmware versions replay to different PCRs.
    pub fn generate(measured: usize, firmware: &str) -> BootLog {
        let measured = measured.max(LOG_PCRS.len());
        let mut log = Vec::with_capacity(measured * 96);
        spec_id_header(&mut log);
        let mut pcrs = [[0u8; 32]; 8];
        let mut extend =
            |log: &mut Vec<u8>, pcr: u8, event_type: u32, data: &[u8], digest: [u8; 32]| {
                let slot = &mut pcrs[usize::from(pcr)];
                let mut h = Sha256::new();
                h.update(*slot);
                h.update(digest);
                *slot = h.finalize().into();
                event2(log, pcr, event_type, &digest, data);
            };

        let crtm = utf16_nul(&format!("writ-loadgen firmware {firmware}"));
        extend(
            &mut log,
            0,
            EV_S_CRTM_VERSION,
            &crtm,
            Sha256::digest(&crtm).into(),
        );
        let before_separators = measured - LOG_PCRS.len();
        for i in 1..before_separators {
            if i % 16 == 1 {
                // UEFI_PLATFORM_FIRMWARE_BLOB { base u64, length u64 }; the
                // digest is of the blob itself, here a name for it.
                let base = 0xff00_0000u64 + (i as u64) * 0x1_0000;
                let mut data = base.to_le_bytes().to_vec();
                data.extend_from_slice(&0x1_0000u64.to_le_bytes());
                let blob = format!("{firmware} volume {i}");
                extend(
                    &mut log,
                    0,
                    EV_EFI_PLATFORM_FIRMWARE_BLOB,
                    &data,
                    Sha256::digest(blob.as_bytes()).into(),
                );
            } else {
                let pcr = LOG_PCRS[i % LOG_PCRS.len()];
                let text = format!("writ-loadgen {firmware} action {i}");
                extend(
                    &mut log,
                    pcr,
                    EV_EFI_ACTION,
                    text.as_bytes(),
                    Sha256::digest(text.as_bytes()).into(),
                );
            }
        }
        for pcr in LOG_PCRS {
            let data = [0u8; 4];
            extend(
                &mut log,
                pcr,
                EV_SEPARATOR,
                &data,
                Sha256::digest(data).into(),
            );
        }
        BootLog {
            bytes: log,
            pcrs,
            events: measured,
        }
    }

    /// `pcrDigest` of a quote over `LOG_PCRS`: SHA-256 of the values in
    /// ascending PCR order.
    pub fn pcr_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for v in &self.pcrs {
            h.update(v);
        }
        h.finalize().into()
    }
}

/// The `TCG_PCR_EVENT` header carrying `TCG_EfiSpecIDEvent` with one
/// algorithm (SHA-256, 32 bytes).
fn spec_id_header(log: &mut Vec<u8>) {
    let mut spec = Vec::new();
    spec.extend_from_slice(b"Spec ID Event03\0");
    spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
    spec.push(0); // specVersionMinor
    spec.push(2); // specVersionMajor
    spec.push(2); // specErrata
    spec.push(2); // uintnSize: UINT64
    spec.extend_from_slice(&1u32.to_le_bytes()); // numberOfAlgorithms
    spec.extend_from_slice(&TPM_ALG_SHA256.to_le_bytes());
    spec.extend_from_slice(&32u16.to_le_bytes());
    spec.push(0); // vendorInfoSize
    log.extend_from_slice(&0u32.to_le_bytes()); // pcrIndex
    log.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
    log.extend_from_slice(&[0u8; 20]); // SHA-1 digest: zero for EV_NO_ACTION
    push_sized(log, &spec);
}

/// One `TCG_PCR_EVENT2` with a single SHA-256 digest.
fn event2(log: &mut Vec<u8>, pcr: u8, event_type: u32, digest: &[u8; 32], data: &[u8]) {
    log.extend_from_slice(&u32::from(pcr).to_le_bytes());
    log.extend_from_slice(&event_type.to_le_bytes());
    log.extend_from_slice(&1u32.to_le_bytes()); // TPML_DIGEST_VALUES.count
    log.extend_from_slice(&TPM_ALG_SHA256.to_le_bytes());
    log.extend_from_slice(digest);
    push_sized(log, data);
}

fn push_sized(log: &mut Vec<u8>, data: &[u8]) {
    // Event data here is at most a few dozen bytes.
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    log.extend_from_slice(&size.to_le_bytes());
    log.extend_from_slice(data);
}

/// UTF-16LE with a terminating NUL (EV_S_CRTM_VERSION).
fn utf16_nul(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_has_the_requested_events_and_firmware_changes_the_pcrs() {
        let a = BootLog::generate(100, "1.0");
        let b = BootLog::generate(100, "1.1");
        assert_eq!(a.events, 100);
        assert_ne!(a.pcrs, b.pcrs);
        assert_eq!(a, BootLog::generate(100, "1.0"));
        // Every PCR 0–7 got at least its separator.
        assert!(a.pcrs.iter().all(|p| p != &[0u8; 32]));
        assert_eq!(BootLog::generate(3, "x").events, 8);
    }
}
