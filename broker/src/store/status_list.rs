//! The store's side of the Token Status Lists: slots (epoch, index) for
//! new tokens from one allocator row shared by every broker, the epochs'
//! sizes, and which indices of an epoch are revoked.

/// A token's place in a status list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusSlot {
    pub epoch: u64,
    pub idx: u64,
}

/// When a new epoch (a new list) opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochPlan {
    /// Entries of a list: a new epoch opens when the current one is full.
    pub capacity: u64,
    /// A new epoch also opens once the current one is this old (0: never).
    pub period_secs: i64,
}

/// One opened epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusEpoch {
    pub epoch: u64,
    /// Entries of its list.
    pub capacity: u64,
    pub started_at: i64,
}

/// What an epoch's list is built from (read in one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochStatuses {
    /// The status-list version (revocation counter) the read reflects.
    pub version: u64,
    pub epoch: StatusEpoch,
    /// Revoked indices, ascending.
    pub revoked: Vec<u64>,
}

/// The allocator's `UPDATE`, the same for both backends: open a new epoch
/// when the current one is full or too old, else take the next index.
/// Every right-hand side reads the row's old values. Binds: `$1` capacity,
/// `$2` period (0: none), `$3` now.
pub(crate) const ALLOCATE_SQL: &str = "UPDATE status_allocator SET
        epoch = CASE WHEN next_idx >= capacity OR ($2 > 0 AND started_at + $2 <= $3)
                     THEN epoch + 1 ELSE epoch END,
        capacity = CASE WHEN next_idx >= capacity OR ($2 > 0 AND started_at + $2 <= $3)
                        THEN $1 ELSE capacity END,
        started_at = CASE WHEN next_idx >= capacity OR ($2 > 0 AND started_at + $2 <= $3)
                          THEN $3 ELSE started_at END,
        next_idx = CASE WHEN next_idx >= capacity OR ($2 > 0 AND started_at + $2 <= $3)
                        THEN 1 ELSE next_idx + 1 END
    WHERE id = 1
    RETURNING epoch, next_idx - 1 AS idx, capacity, started_at";

/// Open the first epoch if none is open yet (binds: `$1` capacity, `$2` now).
pub(crate) const FIRST_EPOCH_SQL: &str = "UPDATE status_allocator
    SET epoch = 1, capacity = $1, started_at = $2, next_idx = 0
    WHERE id = 1 AND epoch = 0";

/// Record an epoch (binds: epoch, capacity, started_at); idempotent.
pub(crate) const RECORD_EPOCH_SQL: &str = "INSERT INTO status_epochs (epoch, capacity, started_at)
    VALUES ($1, $2, $3) ON CONFLICT (epoch) DO NOTHING";

/// The current epoch.
pub(crate) const CURRENT_EPOCH_SQL: &str =
    "SELECT epoch, capacity, started_at FROM status_allocator WHERE id = 1";

/// Live epochs: the current one, and every one with a token unexpired at
/// `$1` (or with a token of unknown expiry). Ascending.
pub(crate) const LIVE_EPOCHS_SQL: &str = "SELECT e.epoch, e.capacity, e.started_at
    FROM status_epochs e
    WHERE e.epoch = (SELECT epoch FROM status_allocator WHERE id = 1)
       OR EXISTS (SELECT 1 FROM tokens t WHERE t.status_epoch = e.epoch AND t.exp > $1)
    ORDER BY e.epoch";

/// One epoch's row.
pub(crate) const EPOCH_SQL: &str =
    "SELECT epoch, capacity, started_at FROM status_epochs WHERE epoch = $1";

pub(crate) fn to_i64(what: &'static str, v: u64) -> Result<i64, super::StoreError> {
    i64::try_from(v).map_err(|_| super::StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}
