//! Unit-test helpers: a fresh SQLite store, and state changes applied the
//! way the audit writer applies them (here with no leaves).

use super::audit::{ChangeRefused, Entry, EntryError, PrepareEntry, StateChange};
use super::Store;

/// A store in a fresh temporary directory (kept alive by the `TempDir`).
pub(crate) async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (dir, Store::open(&url).await.unwrap())
}

/// Apply one state change through `append_audit_batch`: tokens revoked, or
/// the refusal.
pub(crate) async fn apply(s: &Store, change: StateChange) -> Result<u64, ChangeRefused> {
    let batch: Vec<PrepareEntry> = vec![Box::new(move |_| {
        Ok(Entry {
            change,
            leaves: Vec::new(),
        })
    })];
    let mut out = s.append_audit_batch(batch).await.unwrap();
    match out.pop().unwrap() {
        Ok(a) => Ok(a.tokens_revoked),
        Err(EntryError::Refused(r)) => Err(r),
        Err(e) => panic!("unexpected entry error: {e}"),
    }
}
