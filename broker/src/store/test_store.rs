//! Unit-test helpers: a fresh store on either backend (PostgreSQL: a
//! database on a throw-away server from `pg_harness`), and state changes
//! applied the way the audit writer applies them (here with no leaves).
//! `pg_harness::on_each_backend!` runs a suite against every backend.

use pg_harness::TestStorage;

use super::audit::{
    AppraisalChange, ChangeRefused, Entry, EntryError, Expect, NonceUse, PrepareEntry, StateChange,
};
use super::{AppraisalRecord, HostStatus, ImaCursorRecord, Store, TokenRecord};

pub(crate) use pg_harness::{on_each_backend, Backend};

/// What keeps a test store alive: its file's directory and its location.
#[derive(Debug)]
pub(crate) struct TestDb {
    _dir: tempfile::TempDir,
    pub(crate) storage: TestStorage,
}

impl TestDb {
    /// The storage URL of the store.
    pub(crate) fn url(&self) -> String {
        self.storage.url().to_owned()
    }
}

/// A fresh, empty store on `backend` (kept alive by the [`TestDb`]).
pub(crate) async fn store(backend: Backend) -> (TestDb, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let storage = tokio::task::spawn_blocking(move || backend.storage(&path, "t"))
        .await
        .unwrap()
        .unwrap();
    let store = Store::open(storage.url()).await.unwrap();
    (TestDb { _dir: dir, storage }, store)
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
