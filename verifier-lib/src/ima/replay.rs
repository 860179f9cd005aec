//! PCR 10 replay, the incremental cursor and the boot_aggregate link.

use super::{ImaEntry, ImaError, ImaLog, IMA_PCR};
use crate::crypto::HashAlg;
use crate::eventlog::PcrBanks;

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Where appraisal of a measurement list stopped: the number of entries
/// accepted and the running PCR 10 in both banks after them. The broker
/// stores it after an accepted attestation and resumes from it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImaCursor {
    pub entries: u64,
    #[serde(with = "hex_bytes")]
    pub pcr10_sha1: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub pcr10_sha256: Vec<u8>,
}

impl Default for ImaCursor {
    fn default() -> Self {
        ImaCursor::new()
    }
}

impl ImaCursor {
    /// The state before the first entry: PCR 10 at its reset value (zero).
    pub fn new() -> ImaCursor {
        ImaCursor {
            entries: 0,
            pcr10_sha1: vec![0; HashAlg::Sha1.output_len()],
            pcr10_sha256: vec![0; HashAlg::Sha256.output_len()],
        }
    }
}

/// Continue the running PCR 10 from `cursor` over `entries` (the entries
/// that follow the cursor, in order). Entries for other PCRs are counted
/// but do not touch PCR 10.
pub fn replay_from(cursor: &ImaCursor, entries: &[ImaEntry]) -> ImaCursor {
    let mut sha1 = cursor.pcr10_sha1.clone();
    let mut sha256 = cursor.pcr10_sha256.clone();
    for e in entries.iter().filter(|e| e.pcr == IMA_PCR) {
        sha1 = HashAlg::Sha1.extend(&sha1, &e.extend_value(HashAlg::Sha1));
        sha256 = HashAlg::Sha256.extend(&sha256, &e.extend_value(HashAlg::Sha256));
    }
    let n = u64::try_from(entries.len()).unwrap_or(u64::MAX);
    ImaCursor {
        entries: cursor.entries.saturating_add(n),
        pcr10_sha1: sha1,
        pcr10_sha256: sha256,
    }
}

/// Check the cursor's PCR 10 against every quoted bank it covers (SHA-1,
/// SHA-256). At least one of them must be quoted.
pub fn check_pcr10(cursor: &ImaCursor, quoted: &PcrBanks) -> Result<(), ImaError> {
    let pcr = u8::try_from(IMA_PCR).unwrap_or(10);
    let mut checked = 0;
    for (bank, replayed) in [
        (HashAlg::Sha1, &cursor.pcr10_sha1),
        (HashAlg::Sha256, &cursor.pcr10_sha256),
    ] {
        if let Some(q) = quoted.get(&bank).and_then(|b| b.get(&pcr)) {
            if q != replayed {
                return Err(ImaError::PcrMismatch {
                    bank,
                    pcr: IMA_PCR,
                    replayed: hex::encode(replayed),
                    quoted: hex::encode(q),
                });
            }
            checked += 1;
        }
    }
    if checked == 0 {
        return Err(ImaError::Pcr10NotQuoted);
    }
    Ok(())
}

/// Appraise the part of an ASCII list after `cursor`: parse (template
/// hashes checked), replay PCR 10 from the cursor, compare with the quote.
/// Returns the new cursor and the new entries.
pub fn appraise_ascii(
    text: &str,
    cursor: &ImaCursor,
    quoted: &PcrBanks,
) -> Result<(ImaCursor, Vec<ImaEntry>), ImaError> {
    let log = ImaLog::parse_ascii_after(text, cursor)?;
    let next = replay_from(cursor, &log.entries);
    check_pcr10(&next, quoted)?;
    Ok((next, log.entries))
}

/// Which PCR range a boot_aggregate covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BootAggregateRange {
    /// PCR 0–7 (SHA-1 boot_aggregate; non-SHA-1 before Linux 5.8).
    Pcr0To7,
    /// PCR 0–9 (non-SHA-1 banks since Linux 5.8).
    Pcr0To9,
}

fn aggregate(alg: HashAlg, bank: &std::collections::BTreeMap<u8, Vec<u8>>, upto: u8) -> Vec<u8> {
    let zero = vec![0u8; alg.output_len()];
    alg.digest_parts((0..=upto).map(|i| bank.get(&i).map_or(zero.as_slice(), Vec::as_slice)))
}

/// Check a `boot_aggregate` entry against PCRs replayed from the same
/// boot's event log. PCRs the log never extended count as zero. SHA-1
/// aggregates cover PCR 0–7; other algorithms PCR 0–9 (or 0–7 on kernels
/// before 5.8). Returns the range that matched.
pub fn check_boot_aggregate(
    entry: &ImaEntry,
    pcrs_from_eventlog: &PcrBanks,
) -> Result<BootAggregateRange, ImaError> {
    if entry.path != "boot_aggregate" {
        return Err(ImaError::NotBootAggregate { entry: entry.index });
    }
    let Some((alg_name, listed)) = &entry.file_digest else {
        return Err(ImaError::NotBootAggregate { entry: entry.index });
    };
    let missing = || ImaError::BootAggregateBankMissing {
        alg: alg_name.clone(),
    };
    let alg = HashAlg::from_name(alg_name).ok_or_else(missing)?;
    let bank = pcrs_from_eventlog.get(&alg).ok_or_else(missing)?;
    let pcr0_7 = aggregate(alg, bank, 7);
    let pcr0_9 = aggregate(alg, bank, 9);
    if alg != HashAlg::Sha1 && *listed == pcr0_9 {
        return Ok(BootAggregateRange::Pcr0To9);
    }
    if *listed == pcr0_7 {
        return Ok(BootAggregateRange::Pcr0To7);
    }
    Err(ImaError::BootAggregateMismatch {
        listed: hex::encode(listed),
        pcr0_7: hex::encode(pcr0_7),
        pcr0_9: hex::encode(pcr0_9),
    })
}
