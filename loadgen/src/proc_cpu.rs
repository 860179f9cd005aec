//! CPU time of a process from `/proc/<pid>/stat` (utime + stime, fields 14
//! and 15 after the parenthesised command name), to report the broker's
//! CPU per decision and the load generator's own share.

use std::time::Duration;

/// Why a process's CPU time could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcCpuError {
    #[error("/proc/{pid}/stat: {source}")]
    Read { pid: u32, source: std::io::Error },
    #[error("/proc/{pid}/stat: expected utime and stime after the command name, got {actual:?}")]
    Parse { pid: u32, actual: String },
}

/// User plus system CPU time `pid` has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration, ProcCpuError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|source| ProcCpuError::Read { pid, source })?;
    let ticks = parse_stat(&text).ok_or_else(|| ProcCpuError::Parse {
        pid,
        actual: text.chars().take(200).collect(),
    })?;
    let per_sec = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}

/// utime + stime in clock ticks. The command name may contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state (3), ppid (4), … utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_a_name_with_spaces() {
        let line = "1234 (writ (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat(line), Some(300));
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_time(std::process::id()).is_ok());
    }
}
