//! Unit-test helpers: a fresh SQLite store, and state changes applied the
//! way the audit writer applies them (here with no leaves).

use super::audit::{
    AppraisalChange, ChangeRefused, Entry, EntryError, Expect, NonceUse, PrepareEntry, StateChange,
};
use super::{AppraisalRecord, HostStatus, ImaCursorRecord, Store, TokenRecord};

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

/// Apply an appraisal decision taken on the host's current status, with a
/// nonce of its own.
pub(crate) async fn appraise(
    s: &Store,
    appraisal: AppraisalRecord,
    status: HostStatus,
    token: Option<TokenRecord>,
    ima_cursor: Option<ImaCursorRecord>,
) -> Result<u64, ChangeRefused> {
    let nonce = format!("{}-{}", appraisal.host_id, appraisal.at).into_bytes();
    let current = s.host(&appraisal.host_id).await.unwrap().map(|h| h.status);
    let change = AppraisalChange {
        nonce: NonceUse {
            digest: nonce,
            expires_at: appraisal.at + 60,
            at: appraisal.at,
        },
        expect: Expect {
            status: current,
            clock: None,
        },
        status: current.map(|_| status),
        status_reason: None,
        register: None,
        clock: None,
        clock_refused: None,
        token,
        ima_cursor,
        appraisal,
    };
    apply(s, StateChange::Appraisal(Box::new(change))).await
}
