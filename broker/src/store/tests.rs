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
        audit_index: None,
    }
}

/// Token listings (`GET /v1/tokens`, the dashboard): newest first, by
/// host, workload and state, paged by a cursor without gaps or repeats;
/// children, revocation and the audit leaf index as recorded.
async fn tokens_listed_by_filter_and_cursor(backend: Backend) {
    let (_d, s) = store(backend).await;
    for h in ["a", "b"] {
        apply(&s, StateChange::Host(host(h))).await.unwrap();
    }
    // Tokens 1..=5; 4 and 5 share an iat (the cursor's tie-break is cti).
    for (h, n, at) in [
        ("a", 1, 10),
        ("b", 2, 20),
        ("a", 3, 30),
        ("b", 4, 40),
        ("a", 5, 40),
    ] {
        let mut t = token(h, n, at);
        t.audit_index = Some(u64::from(n) * 10);
        appraise(&s, appraisal(h, at), HostStatus::Trusted, Some(t), None)
            .await
            .unwrap();
    }
    // A token derived from 3 (workload "w/sub").
    let mut child = token("a", 6, 50);
    child.workload = "w/sub".into();
    apply(
        &s,
        StateChange::DerivedToken {
            token: child,
            parent_cti: vec![3; 16],
            host_fresh_since: 0,
        },
    )
    .await
    .unwrap();
    apply(
        &s,
        StateChange::RevokeToken {
            cti: vec![1; 16],
            reason: "test".into(),
            at: 45,
        },
    )
    .await
    .unwrap();
    let ids = |v: &[TokenState]| v.iter().map(|t| t.record.cti[0]).collect::<Vec<u8>>();
    let now = 620; // tokens live 600 s: 1 (iat 10) and 2 (iat 20) have expired.
    let all = s.tokens(&TokenQuery::newest(now, 100)).await.unwrap();
    assert_eq!(ids(&all), vec![6, 4, 5, 3, 2, 1]);
    assert_eq!(all[3].record.audit_index, Some(30));
    assert_eq!(all[0].parent_cti, Some(vec![3; 16]));
    let revoked = &all[5];
    assert!(revoked.revoked);
    assert_eq!(revoked.revoked_at, Some(45));
    assert_eq!(revoked.revocation_reason.as_deref(), Some("test"));

    // Pages of two, following the cursor: every token once, in order.
    let mut seen = Vec::new();
    let mut after: Option<TokenCursor> = None;
    loop {
        let page = s
            .tokens(&TokenQuery {
                after: after.as_ref(),
                ..TokenQuery::newest(now, 2)
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        seen.extend(ids(&page));
        after = page.last().map(TokenCursor::after);
    }
    assert_eq!(seen, ids(&all));

    let q = |host: Option<&'static str>, workload: Option<&'static str>, state| TokenQuery {
        host,
        workload,
        state,
        ..TokenQuery::newest(now, 100)
    };
    let by = |host, workload, state| {
        let s = s.clone();
        async move { ids(&s.tokens(&q(host, workload, state)).await.unwrap()) }
    };
    assert_eq!(by(Some("a"), None, None).await, vec![6, 5, 3, 1]);
    assert_eq!(by(None, Some("w/sub"), None).await, vec![6]);
    assert_eq!(by(None, None, Some(TokenLifecycle::Revoked)).await, vec![1]);
    assert_eq!(by(None, None, Some(TokenLifecycle::Expired)).await, vec![2]);
    assert_eq!(
        by(None, None, Some(TokenLifecycle::Active)).await,
        vec![6, 4, 5, 3]
    );
    assert_eq!(
        by(Some("b"), Some("w"), Some(TokenLifecycle::Active)).await,
        vec![4]
    );
    assert!(by(Some("c"), None, None).await.is_empty());
    // The limit is bounded whatever is asked.
    let zero = s.tokens(&TokenQuery::newest(now, 0)).await.unwrap();
    assert_eq!(zero.len(), 1);

    let children = s.token_children(&[3; 16], 10).await.unwrap();
    assert_eq!(ids(&children), vec![6]);
    assert!(s.token_children(&[6; 16], 10).await.unwrap().is_empty());
}

/// Status changes are host events whose kind is the status entered; the
/// status-only read leaves the rest out, and reads are bounded.
async fn host_status_events_are_recorded_and_read_bounded(backend: Backend) {
    let (_d, s) = store(backend).await;
    apply(&s, StateChange::Host(host("h"))).await.unwrap();
    let change = |n: u8, status: HostStatus, reason: &'static str, at: i64| {
        StateChange::Appraisal(Box::new(AppraisalChange {
            nonce: NonceUse {
                digest: vec![n; 32],
                expires_at: 1000,
                at,
            },
            expect: Expect {
                status: None,
                clock: None,
            },
            appraisal: appraisal("h", at),
            status: Some(status),
            status_reason: Some(reason),
            register: None,
            clock: None,
            clock_refused: None,
            token: None,
            ima_cursor: None,
        }))
    };
    let expect = |c: StateChange, prior: HostStatus| match c {
        StateChange::Appraisal(mut a) => {
            a.expect.status = Some(prior);
            StateChange::Appraisal(a)
        }
        other => other,
    };
    apply(
        &s,
        expect(
            change(1, HostStatus::Trusted, "passing appraisal", 20),
            HostStatus::Enrolled,
        ),
    )
    .await
    .unwrap();
    apply(
        &s,
        expect(
            change(2, HostStatus::Failed, "failing appraisal", 30),
            HostStatus::Trusted,
        ),
    )
    .await
    .unwrap();
    apply(
        &s,
        StateChange::RevokeHost {
            host_id: "h".into(),
            reason: "operator says so".into(),
            at: 40,
        },
    )
    .await
    .unwrap();
    let status = s
        .host_events("h", HostEvents::StatusChanges, 100)
        .await
        .unwrap();
    let seen: Vec<(i64, &str, &str)> = status
        .iter()
        .map(|e| (e.at, e.kind.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "enrolled", "enrollment accepted"),
            (20, "trusted", "passing appraisal (was enrolled)"),
            (30, "failed", "failing appraisal (was trusted)"),
            (40, "revoked", "operator says so"),
        ]
    );
    // Every event: the status changes are among them, oldest first.
    let all = s.host_events("h", HostEvents::All, 100).await.unwrap();
    assert!(all.len() >= status.len(), "{all:?}");
    // The newest ones when bounded, still oldest first.
    let newest = s
        .host_events("h", HostEvents::StatusChanges, 2)
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|e| e.at).collect::<Vec<_>>(),
        vec![30, 40]
    );
}

on_each_backend!(
    tokens_listed_by_filter_and_cursor,
    host_status_events_are_recorded_and_read_bounded,
    enrollment_answered_once,
    ima_cursor_roundtrip_and_replace,
    fleet_secret_is_created_once,
    finding3_retention_deletes_expired_and_old_rows,
);
