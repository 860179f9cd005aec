//! The logs an attester sends with its quote: the TCG event log and the IMA
//! ASCII measurement list, the latter incrementally.
//!
//! IMA protocol: the challenge says how many entries the broker already
//! accepted (`ima_entries_known`) in which boot (`ima_reset_count`,
//! `ima_restart_count`). If the quote just taken shows the same counters,
//! the attester sends the lines from that entry on with `ima_offset` set to
//! it; otherwise (new boot, no cursor, or fewer lines than known) the whole
//! list from entry 0. The list is read AFTER the quote; the broker appraises
//! the prefix whose replay matches the quoted PCR 10.
//!
//! A log file that does not exist is simply not sent; the policy decides
//! whether that host needs it. Any other read error fails the command.

use std::path::{Path, PathBuf};

use verifier_lib::api::{ChallengeResponse, TpmEvidence};
use verifier_lib::tpm::Attest;

use crate::error::CommandError;

/// Where the kernel publishes the TCG event log.
pub const DEFAULT_EVENTLOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// Where the kernel publishes the IMA ASCII measurement list.
pub const DEFAULT_IMA_LOG: &str = "/sys/kernel/security/ima/ascii_runtime_measurements";

/// Which log files to send (`None`: never send that log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSources {
    pub eventlog: Option<PathBuf>,
    pub ima: Option<PathBuf>,
}

impl LogSources {
    /// Send no logs.
    pub fn none() -> LogSources {
        LogSources::default()
    }

    /// The kernel's standard locations.
    pub fn kernel_defaults() -> LogSources {
        LogSources {
            eventlog: Some(PathBuf::from(DEFAULT_EVENTLOG)),
            ima: Some(PathBuf::from(DEFAULT_IMA_LOG)),
        }
    }
}

/// Read `path`; a missing file is `None`.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, CommandError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CommandError::Log {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Byte offset of the start of line `n` (0-based) of `text`, if it has that many lines.
fn line_offset(text: &[u8], n: u64) -> Option<usize> {
    if n == 0 {
        return Some(0);
    }
    let mut seen = 0u64;
    for (i, b) in text.iter().enumerate() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The part of an IMA list to send and its first entry index.
pub fn ima_tail(
    list: Vec<u8>,
    challenge: &ChallengeResponse,
    quote_attest: &[u8],
) -> (Vec<u8>, u64) {
    let known = challenge.ima_entries_known.unwrap_or(0);
    let same_boot = Attest::parse(quote_attest).ok().is_some_and(|a| {
        Some(a.clock_info.reset_count) == challenge.ima_reset_count
            && Some(a.clock_info.restart_count) == challenge.ima_restart_count
    });
    if known == 0 || !same_boot {
        return (list, 0);
    }
    match line_offset(&list, known) {
        Some(off) => (list.get(off..).unwrap_or_default().to_vec(), known),
        None => (list, 0),
    }
}

/// Attach the configured logs to `evidence` (taken for `challenge`).
pub fn attach(
    mut evidence: TpmEvidence,
    challenge: &ChallengeResponse,
    sources: &LogSources,
) -> Result<TpmEvidence, CommandError> {
    if let Some(p) = &sources.eventlog {
        evidence.eventlog = read_optional(p)?;
    }
    if let Some(p) = &sources.ima {
        if let Some(list) = read_optional(p)? {
            let (tail, offset) = ima_tail(list, challenge, &evidence.attest);
            evidence.ima = Some(tail);
            evidence.ima_offset = offset;
        }
    }
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_offsets() {
        let t = b"a\nbb\nccc\n";
        assert_eq!(line_offset(t, 0), Some(0));
        assert_eq!(line_offset(t, 1), Some(2));
        assert_eq!(line_offset(t, 3), Some(9));
        assert_eq!(line_offset(t, 4), None);
    }
}
