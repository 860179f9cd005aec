//! Reboot and rollback detection from a quote's `TPMS_CLOCK_INFO`.
//!
//! Every verified quote carries the TPM's `clock` (milliseconds the TPM has
//! been powered, never set backwards), `resetCount` (incremented by every TPM
//! Reset, i.e. a reboot) and `restartCount` (incremented by TPM Restart /
//! Resume, cleared by a Reset). The broker stores the last triple it accepted
//! per host and [`check_progress`] decides whether the next one may follow it:
//!
//! * counters must never decrease (a lower `resetCount`, or a lower
//!   `restartCount` within one boot, means replayed or rolled-back state);
//! * within one boot (same `resetCount`), `clock` must not go backwards;
//! * a new `resetCount` is a reboot: accepted and recorded, but when the
//!   policy requires boot logs it is accepted only together with a new boot
//!   log ([`RebootEvidence::new_boot_log`], a plain boolean the caller
//!   computes from whatever boot-log evidence it holds). Across a reboot the
//!   clock may be lower (the TPM saves it to NV lazily; `safe` is then false).
//!
//! Pure: no storage, no clock reads.

use serde::{Deserialize, Serialize};

use crate::policy::Failure;
use crate::tpm::ClockInfo;

/// The part of `TPMS_CLOCK_INFO` that must move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    pub reset_count: u32,
    pub restart_count: u32,
    pub clock: u64,
}

impl From<&ClockInfo> for ClockState {
    fn from(c: &ClockInfo) -> Self {
        ClockState {
            reset_count: c.reset_count,
            restart_count: c.restart_count,
            clock: c.clock,
        }
    }
}

/// What the caller knows about boot evidence for this appraisal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RebootEvidence {
    /// The policy requires a boot (event) log with every reboot.
    pub boot_log_required: bool,
    /// This appraisal carried a boot log that differs from the last one
    /// accepted for the host (i.e. evidence of the new boot).
    pub new_boot_log: bool,
}

/// How the new state follows the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockTransition {
    /// No previous state: first appraisal of this host (or after reinstate).
    First,
    /// Same boot, clock moved forward (or stood still).
    SameBoot,
    /// Same boot, the TPM was restarted/resumed (`restartCount` grew).
    Resumed,
    /// A new boot (`resetCount` grew).
    Rebooted,
}

impl ClockTransition {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockTransition::First => "first",
            ClockTransition::SameBoot => "same_boot",
            ClockTransition::Resumed => "resumed",
            ClockTransition::Rebooted => "rebooted",
        }
    }
}

/// Decide whether `current` may follow `previous`. The error is the policy
/// [`Failure`] the appraisal reports (and the host's failure reason).
pub fn check_progress(
    previous: Option<&ClockState>,
    current: &ClockState,
    boot: RebootEvidence,
) -> Result<ClockTransition, Failure> {
    let Some(prev) = previous else {
        return Ok(ClockTransition::First);
    };
    if current.reset_count < prev.reset_count {
        return Err(Failure::TpmCounterRollback {
            counter: "reset_count".into(),
            previous: u64::from(prev.reset_count),
            current: u64::from(current.reset_count),
        });
    }
    if current.reset_count > prev.reset_count {
        if boot.boot_log_required && !boot.new_boot_log {
            return Err(Failure::RebootWithoutBootLog {
                previous_reset_count: u64::from(prev.reset_count),
                current_reset_count: u64::from(current.reset_count),
            });
        }
        return Ok(ClockTransition::Rebooted);
    }
    if current.restart_count < prev.restart_count {
        return Err(Failure::TpmCounterRollback {
            counter: "restart_count".into(),
            previous: u64::from(prev.restart_count),
            current: u64::from(current.restart_count),
        });
    }
    if current.clock < prev.clock {
        return Err(Failure::TpmClockRollback {
            previous: prev.clock,
            current: current.clock,
            reset_count: u64::from(current.reset_count),
        });
    }
    if current.restart_count > prev.restart_count {
        return Ok(ClockTransition::Resumed);
    }
    Ok(ClockTransition::SameBoot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(reset: u32, restart: u32, clock: u64) -> ClockState {
        ClockState {
            reset_count: reset,
            restart_count: restart,
            clock,
        }
    }

    #[test]
    fn forward_progress_is_accepted() {
        let none = RebootEvidence::default();
        assert_eq!(
            check_progress(None, &st(1, 0, 5), none),
            Ok(ClockTransition::First)
        );
        assert_eq!(
            check_progress(Some(&st(1, 0, 5)), &st(1, 0, 5), none),
            Ok(ClockTransition::SameBoot)
        );
        assert_eq!(
            check_progress(Some(&st(1, 0, 5)), &st(1, 1, 9), none),
            Ok(ClockTransition::Resumed)
        );
        // A reboot may lower the clock and clear restartCount.
        assert_eq!(
            check_progress(Some(&st(1, 3, 500)), &st(2, 0, 100), none),
            Ok(ClockTransition::Rebooted)
        );
    }

    #[test]
    fn rollbacks_fail_with_typed_reasons() {
        let none = RebootEvidence::default();
        assert_eq!(
            check_progress(Some(&st(1, 0, 500)), &st(1, 0, 499), none),
            Err(Failure::TpmClockRollback {
                previous: 500,
                current: 499,
                reset_count: 1
            })
        );
        assert!(matches!(
            check_progress(Some(&st(2, 0, 5)), &st(1, 0, 900), none),
            Err(Failure::TpmCounterRollback { ref counter, previous: 2, current: 1 }) if counter == "reset_count"
        ));
        assert!(matches!(
            check_progress(Some(&st(2, 4, 5)), &st(2, 3, 900), none),
            Err(Failure::TpmCounterRollback { ref counter, previous: 4, current: 3 }) if counter == "restart_count"
        ));
    }

    #[test]
    fn reboot_needs_a_new_boot_log_when_required() {
        let required = RebootEvidence {
            boot_log_required: true,
            new_boot_log: false,
        };
        assert_eq!(
            check_progress(Some(&st(1, 0, 5)), &st(2, 0, 1), required),
            Err(Failure::RebootWithoutBootLog {
                previous_reset_count: 1,
                current_reset_count: 2
            })
        );
        let with_log = RebootEvidence {
            boot_log_required: true,
            new_boot_log: true,
        };
        assert_eq!(
            check_progress(Some(&st(1, 0, 5)), &st(2, 0, 1), with_log),
            Ok(ClockTransition::Rebooted)
        );
        // Within one boot the log requirement does not apply.
        assert_eq!(
            check_progress(Some(&st(1, 0, 5)), &st(1, 0, 6), required),
            Ok(ClockTransition::SameBoot)
        );
    }
}
