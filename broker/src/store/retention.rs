//! What retention deletes (`[retention]`, run periodically by
//! `crate::server::retention`). Audit leaves are never deleted; rows they refer to
//! (an appraisal, an enrollment) may be — the leaf keeps the facts.

use serde::Serialize;

/// What to delete, by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Used nonces expiring at or before this (they can no longer verify,
    /// so replay protection no longer needs them), and enrollments that
    /// expired at or before it or were answered.
    pub now: i64,
    /// Appraisals recorded before this, except each host's latest.
    pub appraisals_before: i64,
}

/// Rows deleted by one retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub used_nonces: u64,
    pub enrollments: u64,
    pub appraisals: u64,
}
