//! Fuzz entry points for `eventlog`.

use crate::eventlog::{compare, compare_with_quirks, BootState, EventLog};

/// Parse an event log, replay it, read its claims and compare it with its
/// own replay (which must match). Must never panic.
pub fn eventlog(data: &[u8]) {
    if let Ok(log) = EventLog::parse(data) {
        let replayed = log.replay();
        let _ = BootState::from_log(&log);
        let own = replayed.banks.clone();
        let _ = compare(&replayed, &own);
        let _ = compare_with_quirks(&log, &own);
    }
}
