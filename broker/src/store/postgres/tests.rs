//! What only a database shared by several brokers can show: simultaneous
//! starts, single use of nonces, one fleet secret and one leaf per audit
//! index, with two or more stores ("brokers") on one PostgreSQL database.
//! The backend-neutral suite runs in `store::tests` and `store::apply`.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use sqlx::{PgPool, Row};

use crate::audit::leaves::host_revoked;
use crate::store::audit::{
    AppraisalChange, ChangeRefused, Entry, EntryError, Expect, NonceUse, PrepareEntry, StateChange,
};
use crate::store::test_store::{apply, store, Backend, TestDb};
use crate::store::tests::enrollment;
use crate::store::*;

/// `n` more stores on the database at `url`, opened at once.
async fn brokers_at(url: &str, n: usize) -> Vec<Store> {
    join_all((0..n).map(|_| Store::open(url)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

async fn brokers(db: &TestDb, n: usize) -> Vec<Store> {
    brokers_at(&db.url(), n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_starts_migrate_once() {
    // A fresh database no broker has migrated yet.
    let db = tokio::task::spawn_blocking(pg_harness::database)
        .await
        .unwrap()
        .unwrap();
    let stores = brokers_at(&db.url(), 4).await;
    let pool = PgPool::connect(&db.url()).await.unwrap();
    let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    // Each migration once (a count independent of how many there are).
    let migrations = i64::try_from(super::MIGRATOR.iter().count()).unwrap();
    assert!(migrations >= 2, "{migrations}");
    assert_eq!(applied, migrations);
    for s in &stores {
        assert_eq!(s.counts().await.unwrap().hosts, 0);
    }
}

#[tokio::test]
async fn open_as_stored_neither_creates_nor_migrates_and_only_reads() {
    let (db, s) = store(Backend::Postgres).await;
    let absent = format!("{}_absent", db.url());
    assert!(matches!(
        Store::open_as_stored(&absent).await,
        Err(StoreError::Database(_))
    ));
    s.insert_enrollment(&enrollment("e1", 50)).await.unwrap();
    let stored = Store::open_as_stored(&db.url()).await.unwrap();
    assert_eq!(stored.counts().await.unwrap().enrollments, 1);
    assert!(matches!(
        stored.insert_enrollment(&enrollment("e2", 50)).await,
        Err(StoreError::Database(_))
    ));
    assert_eq!(s.counts().await.unwrap().enrollments, 1);
    // An empty database is not migrated by reading it.
    let empty = db.storage.database().unwrap().sibling().unwrap();
    let stored = Store::open_as_stored(&empty.url()).await.unwrap();
    assert!(matches!(
        stored.counts().await,
        Err(StoreError::Database(_))
    ));
}

fn appraisal_with_nonce(host: &str, nonce: &[u8], at: i64) -> StateChange {
    StateChange::Appraisal(Box::new(AppraisalChange {
        nonce: NonceUse {
            digest: nonce.to_vec(),
            expires_at: at + 60,
            at,
        },
        expect: Expect {
            status: None,
            clock: None,
        },
        appraisal: AppraisalRecord {
            host_id: host.into(),
            at,
            verdict: "affirming".into(),
            policy_id: "p".into(),
            policy_hash: "h".into(),
            evidence_digest: vec![0; 32],
            failures: "[]".into(),
        },
        status: None,
        status_reason: None,
        register: None,
        clock: None,
        clock_refused: None,
        token: None,
        ima_cursor: None,
    }))
}

/// One nonce presented to four brokers at once is used exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_used_once_across_brokers() {
    let (db, _s) = store(Backend::Postgres).await;
    let stores = brokers(&db, 4).await;
    for round in 0..5u8 {
        let nonce = [round; 32];
        let outcomes = join_all(stores.iter().enumerate().map(|(i, s)| {
            let change = appraisal_with_nonce(&format!("h{i}"), &nonce, 10);
            apply(s, change)
        }))
        .await;
        let used = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(used, 1, "round {round}: {outcomes:?}");
        for o in outcomes.iter().filter(|o| o.is_err()) {
            assert_eq!(o, &Err(ChangeRefused::Nonce(NonceProblem::AlreadyUsed)));
        }
    }
    let counts = stores[0].counts().await.unwrap();
    assert_eq!((counts.used_nonces, counts.appraisals), (5, 5));
}

/// Brokers asking for the fleet secret at once all get the one stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_secret_is_created_once_across_brokers() {
    let (db, _s) = store(Backend::Postgres).await;
    let stores = brokers(&db, 4).await;
    let secrets = join_all(
        stores
            .iter()
            .enumerate()
            .map(|(i, s)| async move { s.fleet_secret("challenge", &[i as u8; 32], 1).await }),
    )
    .await;
    let first = secrets[0].as_ref().unwrap().clone();
    assert!(secrets.iter().all(|s| s.as_ref().unwrap() == &first));
    assert!((0..4u8).any(|i| first == [i; 32]));
}

/// Concurrent audit appends from several brokers give every leaf its own
/// index, with no gap (the log head row lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_appends_from_several_brokers_never_share_an_index() {
    let (db, _s) = store(Backend::Postgres).await;
    let stores = brokers(&db, 3).await;
    let rounds = join_all(stores.iter().enumerate().map(|(b, s)| async move {
        let mut firsts = Vec::new();
        for round in 0..10i64 {
            let batch: Vec<PrepareEntry> = (0..3)
                .map(|e| -> PrepareEntry {
                    Box::new(move |_| {
                        Ok(Entry {
                            change: StateChange::Nothing,
                            leaves: vec![
                                host_revoked(&format!("b{b}-r{round}-e{e}"), "test", round),
                                host_revoked("second leaf", "test", round),
                            ],
                        })
                    })
                })
                .collect();
            for out in s.append_audit_batch(batch).await.unwrap() {
                let appended = out.map_err(|e: EntryError| e.to_string()).unwrap();
                assert_eq!(appended.leaf_hashes.len(), 2);
                firsts.push(appended.first_index);
            }
        }
        firsts
    }))
    .await;
    let firsts: BTreeSet<u64> = rounds.into_iter().flatten().collect();
    assert_eq!(firsts.len(), 3 * 10 * 3);
    let leaves = stores[0].audit_leaves(0, u64::MAX >> 1).await.unwrap();
    let indexes: Vec<u64> = leaves.iter().map(|l| l.index).collect();
    assert_eq!(indexes, (0..180).collect::<Vec<u64>>());
    assert!(firsts.iter().all(|f| f % 2 == 0));
}

fn token(cti: u8, host: &str) -> TokenRecord {
    TokenRecord {
        cti: vec![cti; 16],
        host_id: host.into(),
        workload: "w".into(),
        workload_digest: vec![0; 32],
        iat: 100,
        exp: 1000,
        policy_id: "p".into(),
        token_digest: vec![cti; 32],
        status: None,
        audit_index: None,
    }
}

/// Tokens derived through one broker while another revokes their host:
/// each is refused, or recorded before the revocation and revoked by it.
/// None is live afterwards (the re-checks hold across brokers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derivations_racing_a_revocation_on_another_broker_leave_no_live_token() {
    let (db, _s) = store(Backend::Postgres).await;
    let stores = brokers(&db, 2).await;
    let (a, b) = (&stores[0], &stores[1]);
    for round in 0..5u8 {
        let host = format!("h{round}");
        let parent = round.wrapping_mul(50);
        apply(
            a,
            StateChange::Host(HostRecord {
                id: host.clone(),
                status: HostStatus::Enrolled,
                ek_public: vec![round],
                ek_cert_digest: vec![round],
                ak_public: vec![round],
                ak_name: vec![round],
                enrolled_at: 1,
                last_attested_at: None,
                last_failure: None,
                policy_id: None,
            }),
        )
        .await
        .unwrap();
        crate::store::test_store::appraise(
            a,
            AppraisalRecord {
                host_id: host.clone(),
                at: 100,
                verdict: "affirming".into(),
                policy_id: "p".into(),
                policy_hash: "h".into(),
                evidence_digest: vec![0; 32],
                failures: "[]".into(),
            },
            HostStatus::Trusted,
            Some(token(parent, &host)),
            None,
        )
        .await
        .unwrap();
        let derive = async {
            let mut outcomes = Vec::new();
            for child in 1..=20u8 {
                let change = StateChange::DerivedToken {
                    token: token(parent + child, &host),
                    parent_cti: vec![parent; 16],
                    host_fresh_since: 0,
                };
                outcomes.push((parent + child, apply(b, change).await));
            }
            outcomes
        };
        let revoke = apply(
            a,
            StateChange::RevokeHost {
                host_id: host.clone(),
                reason: "test".into(),
                at: 200,
            },
        );
        let (outcomes, revoked) = tokio::join!(derive, revoke);
        let revoked = revoked.unwrap();
        let minted: Vec<u8> = outcomes
            .iter()
            .filter(|(_, o)| o.is_ok())
            .map(|(c, _)| *c)
            .collect();
        // The parent and every child recorded before the revocation.
        assert_eq!(revoked, 1 + minted.len() as u64, "round {round}");
        for (cti, outcome) in &outcomes {
            match outcome {
                Ok(_) => assert!(a.token_state(&[*cti; 16]).await.unwrap().unwrap().revoked),
                Err(r) => assert!(
                    matches!(
                        r,
                        ChangeRefused::ParentRevoked | ChangeRefused::HostNotFresh
                    ),
                    "{r:?}"
                ),
            }
        }
    }
}
