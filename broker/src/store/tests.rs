//! The store's behaviour outside the apply rules (enrollments, IMA
//! cursors, fleet secrets, retention, URL schemes), run through every
//! backend.

use verifier_lib::appraisal::ImaState;
use verifier_lib::ima::ImaCursor;

use crate::store::audit::{AppraisalChange, Expect, NonceUse, StateChange};
use crate::store::test_store::{apply, appraise, on_each_backend, store, Backend};
use crate::store::*;

pub(crate) fn enrollment(id: &str, expires_at: i64) -> EnrollmentRecord {
    EnrollmentRecord {
        id: id.into(),
        host_id: "h".into(),
        ek_public: vec![1],
        ek_cert_digest: vec![2],
        ak_public: vec![3],
        ak_name: vec![4],
        secret_digest: vec![5],
        expires_at,
    }
}

fn appraisal(host: &str, at: i64) -> AppraisalRecord {
    AppraisalRecord {
        host_id: host.into(),
        at,
        verdict: "affirming".into(),
        policy_id: "p".into(),
        policy_hash: "ab".into(),
        evidence_digest: vec![0; 32],
        failures: "[]".into(),
    }
}

#[tokio::test]
async fn unknown_scheme_is_unsupported() {
    let url = "mysql://localhost/writ";
    for err in [
        Store::open(url).await.unwrap_err(),
        Store::open_as_stored(url).await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, StoreError::UnsupportedUrl { url } if url == "mysql://localhost/writ"),
            "{err}"
        );
    }
    assert!(Store::is_server_url("postgres://h/d"));
    assert!(Store::is_server_url("postgresql://h/d"));
    assert!(!Store::is_server_url("sqlite://x.db"));
}

async fn enrollment_answered_once(backend: Backend) {
    let (_d, s) = store(backend).await;
    let rec = enrollment("e1", 50);
    s.insert_enrollment(&rec).await.unwrap();
    assert_eq!(s.take_enrollment("e1", 10).await.unwrap(), Ok(rec));
    assert_eq!(
        s.take_enrollment("e1", 10).await.unwrap(),
        Err(EnrollmentProblem::AlreadyAnswered)
    );
    assert_eq!(
        s.take_enrollment("nope", 10).await.unwrap(),
        Err(EnrollmentProblem::Unknown)
    );
}

async fn ima_cursor_roundtrip_and_replace(backend: Backend) {
    let (_d, s) = store(backend).await;
    assert_eq!(s.ima_cursor("h").await.unwrap(), None);
    let mut rec = ImaCursorRecord {
        host_id: "h".into(),
        state: ImaState {
            cursor: ImaCursor {
                entries: 7,
                pcr10_sha1: vec![1; 20],
                pcr10_sha256: vec![2; 32],
            },
            reset_count: 3,
            restart_count: u32::MAX,
        },
        policy_hash: "ab".into(),
        updated_at: 10,
    };
    let appraised = |rec: &ImaCursorRecord| AppraisalRecord {
        host_id: "h".into(),
        at: rec.updated_at,
        verdict: "affirming".into(),
        policy_id: "p".into(),
        policy_hash: rec.policy_hash.clone(),
        evidence_digest: vec![0; 32],
        failures: "[]".into(),
    };
    let trusted = HostStatus::Trusted;
    assert_eq!(
        appraise(&s, appraised(&rec), trusted, None, Some(rec.clone())).await,
        Ok(0)
    );
    assert_eq!(s.ima_cursor("h").await.unwrap(), Some(rec.clone()));
    rec.state.cursor.entries = 9;
    rec.updated_at += 1;
    assert_eq!(
        appraise(&s, appraised(&rec), trusted, None, Some(rec.clone())).await,
        Ok(0)
    );
    assert_eq!(s.ima_cursor("h").await.unwrap(), Some(rec));
}

async fn fleet_secret_is_created_once(backend: Backend) {
    let (_d, s) = store(backend).await;
    assert_eq!(s.fleet_secret("k", b"first", 1).await.unwrap(), b"first");
    assert_eq!(s.fleet_secret("k", b"second", 2).await.unwrap(), b"first");
    assert_eq!(s.fleet_secret("other", b"x", 2).await.unwrap(), b"x");
}

/// Finding 3: expired used nonces, expired or answered enrollments and
/// old appraisals (not a host's latest) go; the rest stays.
async fn finding3_retention_deletes_expired_and_old_rows(backend: Backend) {
    let (_d, s) = store(backend).await;
    s.insert_enrollment(&enrollment("expired", 50))
        .await
        .unwrap();
    s.insert_enrollment(&enrollment("answered", 500))
        .await
        .unwrap();
    s.insert_enrollment(&enrollment("pending", 500))
        .await
        .unwrap();
    s.take_enrollment("answered", 10).await.unwrap().unwrap();
    for (n, at) in [(b"old".as_slice(), 10), (b"young".as_slice(), 90)] {
        let change = AppraisalChange {
            nonce: NonceUse {
                digest: n.to_vec(),
                expires_at: at + 60,
                at,
            },
            expect: Expect {
                status: None,
                clock: None,
            },
            appraisal: appraisal("gone", at),
            status: None,
            status_reason: None,
            register: None,
            clock: None,
            clock_refused: None,
            token: None,
            ima_cursor: None,
        };
        apply(&s, StateChange::Appraisal(Box::new(change)))
            .await
            .unwrap();
    }
    for at in [10, 20, 30] {
        appraise(&s, appraisal("h", at), HostStatus::Trusted, None, None)
            .await
            .unwrap();
    }
    let before = s.counts().await.unwrap();
    assert_eq!(
        (before.enrollments, before.used_nonces, before.appraisals),
        (3, 5, 5)
    );
    let report = s
        .delete_expired(&RetentionCutoffs {
            now: 100,
            appraisals_before: 25,
        })
        .await
        .unwrap();
    // Nonces expiring at 70, 70, 80, 90 go; 150 stays. Host `h` keeps
    // its appraisal at 30 (young) and `gone` its latest, at 90.
    assert_eq!(
        report,
        RetentionReport {
            used_nonces: 4,
            enrollments: 2,
            appraisals: 3,
        }
    );
    let after = s.counts().await.unwrap();
    assert_eq!(
        (after.enrollments, after.used_nonces, after.appraisals),
        (1, 1, 2)
    );
    assert_eq!(
        s.take_enrollment("pending", 100).await.unwrap(),
        Ok(enrollment("pending", 500))
    );
}

fn host(id: &str) -> HostRecord {
    HostRecord {
        id: id.into(),
        status: HostStatus::Enrolled,
        ek_public: id.as_bytes().to_vec(),
        ek_cert_digest: vec![],
        ak_public: vec![3],
        ak_name: id.as_bytes().to_vec(),
        enrolled_at: 1,
        last_attested_at: None,
        last_failure: None,
        policy_id: None,
    }
}

fn token(host: &str, n: u8, iat: i64) -> TokenRecord {
    TokenRecord {
        cti: vec![n; 16],
        host_id: host.into(),
        workload: "w".into(),
        workload_digest: vec![7; 32],
        iat,
        exp: iat + 600,
        policy_id: "p".into(),
        token_digest: vec![n; 32],
        status: None,
    }
}

/// The dashboard's token listing: newest first, bounded, by host, with the
/// revocation state.
async fn recent_tokens_newest_first_by_host(backend: Backend) {
    let (_d, s) = store(backend).await;
    for h in ["a", "b"] {
        apply(&s, StateChange::Host(host(h))).await.unwrap();
    }
    for (h, n, at) in [("a", 1, 10), ("b", 2, 20), ("a", 3, 30)] {
        appraise(
            &s,
            appraisal(h, at),
            HostStatus::Trusted,
            Some(token(h, n, at)),
            None,
        )
        .await
        .unwrap();
    }
    apply(
        &s,
        StateChange::RevokeToken {
            cti: vec![1; 16],
            reason: "test".into(),
            at: 40,
        },
    )
    .await
    .unwrap();
    let all = s.recent_tokens(None, 10).await.unwrap();
    let seen: Vec<(u8, bool, Option<Vec<u8>>)> = all
        .iter()
        .map(|t| (t.record.cti[0], t.revoked, t.parent_cti.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![(3, false, None), (2, false, None), (1, true, None)]
    );
    assert_eq!(all[1].record, token("b", 2, 20));
    let a = s.recent_tokens(Some("a"), 1).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].record, token("a", 3, 30));
    assert!(s.recent_tokens(Some("c"), 10).await.unwrap().is_empty());
}

on_each_backend!(
    recent_tokens_newest_first_by_host,
    enrollment_answered_once,
    ima_cursor_roundtrip_and_replace,
    fleet_secret_is_created_once,
    finding3_retention_deletes_expired_and_old_rows,
);
