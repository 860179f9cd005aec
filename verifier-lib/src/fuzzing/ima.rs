//! Fuzz entry points for `ima`.

use crate::ima::{replay_from, ImaCursor, ImaLog};

/// Parse the input as an ASCII list (UTF-8 lossy) and as a binary list,
/// replaying PCR 10 for whatever parses. Must never panic.
pub fn ima(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(log) = ImaLog::parse_ascii(&text) {
        let _ = replay_from(&ImaCursor::new(), &log.entries);
    }
    if let Ok(log) = ImaLog::parse_binary(data) {
        let _ = replay_from(&ImaCursor::new(), &log.entries);
        let _ = ImaLog::parse_binary(&log.to_binary());
    }
}
