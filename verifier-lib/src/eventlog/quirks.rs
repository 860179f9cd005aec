//! Named firmware quirks tolerated during comparison, each justified by an
//! upstream source and exercised by a named test.
//!
//! Implemented:
//! - [`Quirk::ExitBootServicesNotLogged`]: the firmware extends PCR 5 with
//!   the `EV_EFI_ACTION` "Exit Boot Services Invocation" and "... Returned
//!   with Success/Failure" events after the OS copied the log, so they are
//!   missing from it. go-attestation (`attest/eventlog_workarounds.go`)
//!   retries a failed PCR 5 replay with these events appended; so does Writ,
//!   and only for PCR 5, and reports which variant it used.
//!
//! Always on (not quirks, but the rules other tools get wrong):
//! `EV_NO_ACTION` events are never extended (tpm2-tools' `tpm2_eventlog`
//! extends them and gets PCR 0 wrong on two of the vector logs), and the
//! StartupLocality event sets PCR 0's reset value.
//!
//! Not implemented, because no source diagnoses them: AMD fTPM PCR 9
//! (go-attestation#498, open: the PCR 9 events in the report come from
//! systemd, not firmware) and VMware vTPM PCR 0 (go-tpm-tools#223, open, no
//! log attached).

use super::replay::{compare, replay_events, PcrBanks, PcrMismatch, ReplayedPcrs};
use super::{event_type, EventLog};
use crate::crypto::HashAlg;

/// One synthetic event's digests, one per bank.
type Digests = Vec<(HashAlg, Vec<u8>)>;

const EBS_INVOCATION: &str = "Exit Boot Services Invocation";
const EBS_SUCCESS: &str = "Exit Boot Services Returned with Success";
const EBS_FAILURE: &str = "Exit Boot Services Returned with Failure";

/// A firmware quirk applied to make a replay match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Quirk {
    /// PCR 5's ExitBootServices `EV_EFI_ACTION` events were extended but not
    /// logged; `actions` is the sequence that was appended.
    ExitBootServicesNotLogged { actions: &'static [&'static str] },
}

/// The result of a comparison that needed (or did not need) a quirk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuirkOutcome {
    /// The PCR values that matched the quote.
    pub replayed: ReplayedPcrs,
    /// The quirk applied, if the plain replay did not match.
    pub applied: Option<Quirk>,
}

const EBS_VARIANTS: [&[&str]; 3] = [
    &[EBS_INVOCATION, EBS_SUCCESS],
    &[EBS_INVOCATION, EBS_FAILURE],
    &[EBS_INVOCATION, EBS_FAILURE, EBS_SUCCESS],
];

/// Replay `log` and compare with `quoted`; if the only reason for failure
/// is a quirk listed in this module, apply it and say so.
pub fn compare_with_quirks(
    log: &EventLog,
    quoted: &PcrBanks,
) -> Result<QuirkOutcome, Vec<PcrMismatch>> {
    let replayed = log.replay();
    let first = match compare(&replayed, quoted) {
        Ok(()) => {
            return Ok(QuirkOutcome {
                replayed,
                applied: None,
            })
        }
        Err(m) => m,
    };
    if first.iter().all(|m| m.pcr == 5) {
        let banks = log.banks();
        for actions in EBS_VARIANTS {
            let extra: Vec<(Digests, &[u8])> = actions
                .iter()
                .map(|a| {
                    let digests = banks.iter().map(|b| (*b, b.digest(a.as_bytes()))).collect();
                    (digests, a.as_bytes())
                })
                .collect();
            let events = log
                .events
                .iter()
                .map(|e| (e.pcr, e.event_type, e.digests.as_slice(), e.data.as_slice()))
                .chain(
                    extra
                        .iter()
                        .map(|(d, data)| (5, event_type::EV_EFI_ACTION, d.as_slice(), *data)),
                );
            let candidate = replay_events(&banks, events);
            if compare(&candidate, quoted).is_ok() {
                return Ok(QuirkOutcome {
                    replayed: candidate,
                    applied: Some(Quirk::ExitBootServicesNotLogged { actions }),
                });
            }
        }
    }
    Err(first)
}
