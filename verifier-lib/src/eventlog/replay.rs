//! PCR replay and comparison against quoted values.

use std::collections::BTreeMap;

use super::{event_type, serialize_hex, serialize_opt_hex, EventLog};
use crate::crypto::HashAlg;

/// PCR values per bank: `bank → PCR index → value`. Same shape as the
/// quoted PCR values, so the two compare directly.
pub type PcrBanks = BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>;

/// `StartupLocality\0`: the signature of the `EV_NO_ACTION` event that
/// records the locality TPM2_Startup was issued from.
pub(crate) const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// The PCR values a log implies. A bank holds every PCR that at least one
/// (non-`EV_NO_ACTION`) event extended; PCRs the log never touches are
/// absent, because the log says nothing about them.
///
/// Serializes as `{"sha256": {"0": "hex", ...}, ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayedPcrs {
    pub banks: PcrBanks,
    /// The locality from a StartupLocality event, if the log had one.
    pub startup_locality: Option<u8>,
}

impl ReplayedPcrs {
    /// The replayed value of `pcr` in `bank`, if the log extended it.
    pub fn value(&self, bank: HashAlg, pcr: u8) -> Option<&[u8]> {
        self.banks
            .get(&bank)
            .and_then(|b| b.get(&pcr))
            .map(Vec::as_slice)
    }

    /// Every PCR index the log extended in at least one bank.
    pub fn measured_pcrs(&self) -> std::collections::BTreeSet<u8> {
        self.banks
            .values()
            .flat_map(|b| b.keys().copied())
            .collect()
    }
}

impl serde::Serialize for ReplayedPcrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hexed: BTreeMap<&str, BTreeMap<String, String>> = self
            .banks
            .iter()
            .map(|(alg, pcrs)| {
                (
                    alg.name(),
                    pcrs.iter()
                        .map(|(i, v)| (i.to_string(), hex::encode(v)))
                        .collect(),
                )
            })
            .collect();
        serde::Serialize::serialize(&hexed, s)
    }
}

/// Is this the StartupLocality `EV_NO_ACTION` event? Returns the locality.
pub(crate) fn startup_locality(pcr: u32, event_type: u32, data: &[u8]) -> Option<u8> {
    if pcr != 0 || event_type != event_type::EV_NO_ACTION || data.len() != 17 {
        return None;
    }
    match data.split_at_checked(16) {
        Some((sig, [loc])) if sig == STARTUP_LOCALITY => Some(*loc),
        _ => None,
    }
}

/// The reset value of a PCR, honouring the StartupLocality of PCR 0.
fn initial(bank: HashAlg, pcr: u8, locality: Option<u8>) -> Vec<u8> {
    let mut v = vec![0u8; bank.output_len()];
    if pcr == 0 {
        if let (Some(loc), Some(last)) = (locality, v.last_mut()) {
            *last = loc;
        }
    }
    v
}

/// Replay a sequence of `(pcr, event_type, digest, data)` events into `banks`.
pub(crate) fn replay_events<'a>(
    banks: &[HashAlg],
    events: impl Iterator<Item = (u32, u32, &'a [(HashAlg, Vec<u8>)], &'a [u8])>,
) -> ReplayedPcrs {
    let mut out = ReplayedPcrs::default();
    for (pcr, etype, digests, data) in events {
        if etype == event_type::EV_NO_ACTION {
            // EV_NO_ACTION is informational and never extended. The one that
            // matters for replay sets PCR 0's reset value, if it comes before
            // any PCR 0 extend.
            if let Some(loc) = startup_locality(pcr, etype, data) {
                let pcr0_extended = out.banks.values().any(|b| b.contains_key(&0));
                if !pcr0_extended && out.startup_locality.is_none() {
                    out.startup_locality = Some(loc);
                }
            }
            continue;
        }
        // Indexes were range-checked at parse time.
        let Ok(pcr) = u8::try_from(pcr) else { continue };
        for &bank in banks {
            let Some((_, digest)) = digests.iter().find(|(a, _)| *a == bank) else {
                continue;
            };
            let locality = out.startup_locality;
            let slot = out
                .banks
                .entry(bank)
                .or_default()
                .entry(pcr)
                .or_insert_with(|| initial(bank, pcr, locality));
            *slot = bank.extend(slot, digest);
        }
    }
    out
}

pub(super) fn replay(log: &EventLog) -> ReplayedPcrs {
    let banks = log.banks();
    replay_events(
        &banks,
        log.events
            .iter()
            .map(|e| (e.pcr, e.event_type, e.digests.as_slice(), e.data.as_slice())),
    )
}

/// One PCR whose replayed value differs from the quoted one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PcrMismatch {
    pub bank: HashAlg,
    pub pcr: u8,
    /// `None` when the log extends this PCR in other banks but not this one.
    #[serde(serialize_with = "serialize_opt_hex")]
    pub replayed: Option<Vec<u8>>,
    #[serde(serialize_with = "serialize_hex")]
    pub quoted: Vec<u8>,
}

/// Compare replayed PCRs with quoted ones and report every mismatch.
///
/// Checked: every quoted `(bank, pcr)` where `pcr` is a PCR the log extends
/// in at least one bank. A quoted bank the log has no digests for is a
/// mismatch for those PCRs (`replayed: None`), so a quote over a bank the log
/// cannot vouch for never passes silently. Quoted PCRs the log never touches
/// (for example PCR 10 for IMA) are not the log's business and are skipped;
/// policy decides which PCRs must be quoted.
pub fn compare(replayed: &ReplayedPcrs, quoted: &PcrBanks) -> Result<(), Vec<PcrMismatch>> {
    let measured = replayed.measured_pcrs();
    let mut mismatches = Vec::new();
    for (&bank, pcrs) in quoted {
        for (&pcr, q) in pcrs {
            if !measured.contains(&pcr) {
                continue;
            }
            let r = replayed.value(bank, pcr);
            if r != Some(q.as_slice()) {
                mismatches.push(PcrMismatch {
                    bank,
                    pcr,
                    replayed: r.map(<[u8]>::to_vec),
                    quoted: q.clone(),
                });
            }
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(mismatches)
    }
}
