//! Per-host IMA cursors (migration 0003): where the last affirming IMA
//! appraisal stopped, so the next one parses only the new entries. Stored
//! with their appraisal (`StateChange::Appraisal::ima_cursor`).

use verifier_lib::appraisal::ImaState;

/// A stored IMA cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaCursorRecord {
    pub host_id: String,
    pub state: ImaState,
    /// Hash of the policy the entries were appraised under; a cursor from
    /// another policy is not continued (the list is appraised again from 0).
    pub policy_hash: String,
    pub updated_at: i64,
}
