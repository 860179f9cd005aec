//! Unit-test helpers: a fresh store on either backend, state changes
//! applied the way the audit writer applies them (here with no leaves), and
//! [`on_each_backend!`], which runs one suite of store tests against every
//! backend (PostgreSQL: a throw-away server from `pg_harness`).

use super::audit::{
    AppraisalChange, ChangeRefused, Entry, EntryError, Expect, NonceUse, PrepareEntry, StateChange,
};
use super::{AppraisalRecord, HostStatus, ImaCursorRecord, Store, TokenRecord};

/// The backends a store test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// What keeps a test store alive: its file's directory, or its database on
/// a throw-away server.
#[derive(Debug)]
pub(crate) enum TestDb {
    File(tempfile::TempDir),
    Server(pg_harness::PgDatabase),
}

impl TestDb {
    /// The storage URL of the store.
    pub(crate) fn url(&self) -> String {
        match self {
            TestDb::File(dir) => format!("sqlite://{}", dir.path().join("t.db").display()),
            TestDb::Server(db) => db.url(),
        }
    }
}

/// A fresh, empty store on `backend` (kept alive by the [`TestDb`]).
pub(crate) async fn store(backend: Backend) -> (TestDb, Store) {
    let db = match backend {
        Backend::Sqlite => TestDb::File(tempfile::tempdir().unwrap()),
        Backend::Postgres => TestDb::Server(
            tokio::task::spawn_blocking(pg_harness::database)
                .await
                .unwrap()
                .unwrap(),
        ),
    };
    let store = Store::open(&db.url()).await.unwrap();
    (db, store)
}

/// Runs each listed `async fn NAME(backend: Backend)` as a test per backend:
/// `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::store::test_store::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::store::test_store::Backend::Postgres).await
                }
            )+
        }
    };
}
pub(crate) use on_each_backend;

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
