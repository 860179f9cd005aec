//! The rules of `store::apply`, run through every backend.

use verifier_lib::host_clock::ClockState;

use crate::store::audit::{ChangeRefused, StateChange};
use crate::store::test_store::{apply, appraise, on_each_backend, store, Backend};
use crate::store::*;

fn derived(t: TokenRecord, parent: u8) -> StateChange {
    StateChange::DerivedToken {
        token: t,
        parent_cti: vec![parent; 16],
        host_fresh_since: 0,
    }
}

fn revoke_token(cti: u8, at: i64) -> StateChange {
    StateChange::RevokeToken {
        cti: vec![cti; 16],
        reason: "test".into(),
        at,
    }
}

fn host(id: &str) -> HostRecord {
    HostRecord {
        id: id.into(),
        status: HostStatus::Enrolled,
        ek_public: vec![1],
        ek_cert_digest: vec![2],
        ak_public: vec![3],
        ak_name: vec![4],
        enrolled_at: 1,
        last_attested_at: None,
        last_failure: None,
        policy_id: None,
    }
}

fn token(cti: u8, host: &str, exp: i64) -> TokenRecord {
    TokenRecord {
        cti: vec![cti; 16],
        host_id: host.into(),
        workload: "w".into(),
        workload_digest: vec![0; 32],
        iat: 100,
        exp,
        policy_id: "p".into(),
        token_digest: vec![cti; 32],
        status: None,
        audit_index: None,
    }
}

/// An appraisal as the decision records it (no IMA cursor).
fn appraisal(host: &str, at: i64, verdict: &str) -> AppraisalRecord {
    AppraisalRecord {
        host_id: host.into(),
        at,
        verdict: verdict.into(),
        policy_id: "p".into(),
        policy_hash: "h".into(),
        evidence_digest: vec![0; 32],
        failures: "[]".into(),
    }
}

async fn revocation_cascades_to_descendants_and_blocks_new_children(backend: Backend) {
    let (_d, s) = store(backend).await;
    assert_eq!(apply(&s, StateChange::Host(host("h"))).await, Ok(0));
    appraise(
        &s,
        appraisal("h", 100, "affirming"),
        HostStatus::Trusted,
        Some(token(1, "h", 1000)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(apply(&s, derived(token(2, "h", 900), 1)).await, Ok(0));
    assert_eq!(apply(&s, derived(token(3, "h", 800), 2)).await, Ok(0));
    assert_eq!(
        apply(&s, derived(token(4, "h", 800), 9)).await,
        Err(ChangeRefused::ParentRevoked)
    );
    let v0 = s.status_version().await.unwrap();
    assert_eq!(apply(&s, revoke_token(2, 150)).await, Ok(2));
    let (v, ctis) = s.revoked_ctis(0).await.unwrap();
    assert_eq!(v, v0 + 1);
    assert_eq!(ctis.len(), 2);
    assert!(!s.token_state(&[1; 16]).await.unwrap().unwrap().revoked);
    // A revoked parent gets no children.
    assert_eq!(
        apply(&s, derived(token(5, "h", 800), 3)).await,
        Err(ChangeRefused::ParentRevoked)
    );
    // Revoking again changes nothing and keeps the version.
    assert_eq!(apply(&s, revoke_token(2, 151)).await, Ok(0));
    assert_eq!(s.status_version().await.unwrap(), v0 + 1);
    assert_eq!(
        apply(&s, revoke_token(8, 1)).await,
        Err(ChangeRefused::UnknownToken)
    );
    // Expired revoked tokens drop out of the list.
    assert_eq!(s.revoked_ctis(850).await.unwrap().1.len(), 1);
}

async fn failing_appraisal_and_staleness_revoke_host_tokens(backend: Backend) {
    let (_d, s) = store(backend).await;
    for h in ["a", "b"] {
        assert_eq!(apply(&s, StateChange::Host(host(h))).await, Ok(0));
    }
    appraise(
        &s,
        appraisal("a", 100, "affirming"),
        HostStatus::Trusted,
        Some(token(1, "a", 1000)),
        None,
    )
    .await
    .unwrap();
    appraise(
        &s,
        appraisal("b", 200, "affirming"),
        HostStatus::Trusted,
        Some(token(2, "b", 1000)),
        None,
    )
    .await
    .unwrap();
    let failed = appraise(
        &s,
        appraisal("a", 300, "contraindicated"),
        HostStatus::Failed,
        None,
        None,
    )
    .await;
    assert_eq!(failed, Ok(1));
    assert!(s.token_state(&[1; 16]).await.unwrap().unwrap().revoked);
    assert!(!s.token_state(&[2; 16]).await.unwrap().unwrap().revoked);
    // b's last pass was at 200: stale with a cutoff of 250, a (failed) is left alone.
    assert_eq!(
        s.stale_candidates(250).await.unwrap(),
        vec!["b".to_string()]
    );
    let stale = |h: &str| StateChange::MarkStale {
        host_id: h.into(),
        cutoff: 250,
        at: 400,
    };
    assert_eq!(apply(&s, stale("b")).await, Ok(1));
    // a is failed, not trusted: not a stale candidate.
    assert_eq!(
        apply(&s, stale("a")).await,
        Err(ChangeRefused::HostNotStale)
    );
    assert_eq!(
        s.host("b").await.unwrap().unwrap().status,
        HostStatus::Stale
    );
    assert_eq!(
        s.host("a").await.unwrap().unwrap().status,
        HostStatus::Failed
    );
    assert!(s.token_state(&[2; 16]).await.unwrap().unwrap().revoked);
    let kinds: Vec<String> = s
        .host_events("b", HostEvents::All, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["enrolled", "stale", "tokens_revoked"]);
}

async fn revoke_reinstate_and_clock_baseline(backend: Backend) {
    let (_d, s) = store(backend).await;
    assert_eq!(apply(&s, StateChange::Host(host("h"))).await, Ok(0));
    let st = |reset, clock| ClockState {
        reset_count: reset,
        restart_count: 0,
        clock,
    };
    // The clock rule is the decision's (verifier_lib::decision); the store
    // keeps the baseline, and reinstatement clears it.
    s.set_host_clock("h", Some(st(2, 10))).await.unwrap();
    assert_eq!(s.host_clock("h").await.unwrap(), Some(st(2, 10)));
    let reinstate = |at| StateChange::ReinstateHost {
        host_id: "h".into(),
        at,
    };
    let revoke = |h: &str, at| StateChange::RevokeHost {
        host_id: h.into(),
        reason: "op".into(),
        at,
    };
    assert_eq!(
        apply(&s, reinstate(4)).await,
        Err(ChangeRefused::HostNotRevoked)
    );
    assert_eq!(apply(&s, revoke("h", 5)).await, Ok(0));
    assert_eq!(
        s.host("h").await.unwrap().unwrap().status,
        HostStatus::Revoked
    );
    // An appraisal does not un-revoke.
    appraise(
        &s,
        appraisal("h", 6, "affirming"),
        HostStatus::Trusted,
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        s.host("h").await.unwrap().unwrap().status,
        HostStatus::Revoked
    );
    assert_eq!(apply(&s, reinstate(7)).await, Ok(0));
    assert_eq!(
        s.host("h").await.unwrap().unwrap().status,
        HostStatus::Enrolled
    );
    assert_eq!(s.host_clock("h").await.unwrap(), None);
    assert_eq!(
        apply(&s, revoke("zz", 8)).await,
        Err(ChangeRefused::UnknownHost)
    );
    let kinds: Vec<String> = s
        .host_events("h", HostEvents::All, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["enrolled", "revoked", "reinstated"]);
}

/// An appraisal decision applies only while its preconditions hold: the
/// nonce unused, the host's status and clock baseline as read. A refused
/// change writes nothing, not even the nonce's consumption, so the decision
/// can be taken again.
async fn appraisal_preconditions_are_rechecked_in_the_transaction(backend: Backend) {
    use crate::store::audit::{AppraisalChange, Expect, NonceUse};
    use verifier_lib::decision::ClockUpdate;
    use verifier_lib::host_clock::ClockTransition;

    let (_d, s) = store(backend).await;
    assert_eq!(apply(&s, StateChange::Host(host("h"))).await, Ok(0));
    let st = |reset, clock| ClockState {
        reset_count: reset,
        restart_count: 0,
        clock,
    };
    let change = |expect: Option<HostStatus>, clock: Option<ClockState>, n: &[u8]| {
        StateChange::Appraisal(Box::new(AppraisalChange {
            nonce: NonceUse {
                digest: n.to_vec(),
                expires_at: 1000,
                at: 10,
            },
            expect: Expect {
                status: expect,
                clock,
            },
            appraisal: appraisal("h", 10, "affirming"),
            status: Some(HostStatus::Trusted),
            status_reason: Some("passing appraisal"),
            register: None,
            clock: Some(ClockUpdate {
                state: st(2, 5),
                transition: ClockTransition::Rebooted,
                new_boot_log: true,
            }),
            clock_refused: None,
            token: Some(token(1, "h", 100)),
            ima_cursor: None,
        }))
    };
    // The host is enrolled, not trusted: the decision read something else.
    assert_eq!(
        apply(&s, change(Some(HostStatus::Trusted), None, b"n1")).await,
        Err(ChangeRefused::Conflict)
    );
    // The clock baseline moved since the read.
    s.set_host_clock("h", Some(st(1, 50))).await.unwrap();
    assert_eq!(
        apply(&s, change(Some(HostStatus::Enrolled), None, b"n1")).await,
        Err(ChangeRefused::Conflict)
    );
    let counts = s.counts().await.unwrap();
    assert_eq!((counts.appraisals, counts.tokens), (0, 0));
    // Decided again on what is there now: applies, with the nonce unused.
    assert_eq!(
        apply(
            &s,
            change(Some(HostStatus::Enrolled), Some(st(1, 50)), b"n1")
        )
        .await,
        Ok(0)
    );
    let h = s.host("h").await.unwrap().unwrap();
    assert_eq!(h.status, HostStatus::Trusted);
    assert_eq!(s.host_clock("h").await.unwrap(), Some(st(2, 5)));
    let kinds: Vec<String> = s
        .host_events("h", HostEvents::All, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["enrolled", "trusted", "rebooted"]);
    let events = s.host_events("h", HostEvents::All, 100).await.unwrap();
    let reboot = events.iter().find(|e| e.kind == "rebooted").unwrap();
    assert!(reboot.detail.ends_with("boot log: new"), "{events:?}");
    // The status change is on the host's timeline with its reason.
    let trusted = events.iter().find(|e| e.kind == "trusted").unwrap();
    assert_eq!(trusted.detail, "passing appraisal (was enrolled)");
    // The nonce is single-use.
    assert_eq!(
        apply(&s, change(Some(HostStatus::Trusted), Some(st(2, 5)), b"n1")).await,
        Err(ChangeRefused::Nonce(NonceProblem::AlreadyUsed))
    );
    // A revocation between read and apply refuses the token.
    apply(
        &s,
        StateChange::RevokeHost {
            host_id: "h".into(),
            reason: "op".into(),
            at: 11,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        apply(&s, change(Some(HostStatus::Trusted), Some(st(2, 5)), b"n2")).await,
        Err(ChangeRefused::Conflict)
    );
    assert_eq!(s.counts().await.unwrap().tokens, 1);
}

/// A `TPMT_PUBLIC` of EK template L-1 with modulus `[fill; 256]` and the
/// exponent written as `exponent`.
fn l1_ek(fill: u8, exponent: u32) -> Vec<u8> {
    let mut b = vec![0x00, 0x01, 0x00, 0x0b, 0x00, 0x03, 0x00, 0xb2, 0x00, 0x20];
    b.extend_from_slice(&[0x5a; 32]);
    b.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43, 0x00, 0x10, 0x08, 0x00]);
    b.extend_from_slice(&exponent.to_be_bytes());
    b.extend_from_slice(&[0x01, 0x00]);
    b.extend_from_slice(&[fill; 256]);
    b
}

fn tpm_host(id: &str, ek_public: Vec<u8>, cert: u8) -> HostRecord {
    HostRecord {
        ek_public,
        ek_cert_digest: vec![cert; 32],
        ..host(id)
    }
}

fn revoke_host(id: &str) -> StateChange {
    StateChange::RevokeHost {
        host_id: id.into(),
        reason: "test".into(),
        at: 10,
    }
}

async fn finding1_revoked_tpm_is_refused_under_any_host_id_until_reinstated(backend: Backend) {
    let (_d, s) = store(backend).await;
    apply(&s, StateChange::Host(tpm_host("a", l1_ek(7, 0), 1)))
        .await
        .unwrap();
    apply(&s, revoke_host("a")).await.unwrap();
    // The host row itself.
    assert_eq!(
        apply(&s, StateChange::Host(tpm_host("a", l1_ek(7, 0), 1))).await,
        Err(ChangeRefused::HostRevoked)
    );
    // The same key written another way, under another id.
    assert_eq!(
        apply(&s, StateChange::Host(tpm_host("b", l1_ek(7, 65537), 9))).await,
        Err(ChangeRefused::HostRevoked)
    );
    // Another key presented with the revoked certificate.
    assert_eq!(
        apply(&s, StateChange::Host(tpm_host("c", l1_ek(8, 0), 1))).await,
        Err(ChangeRefused::HostRevoked)
    );
    // Another TPM is not affected.
    apply(&s, StateChange::Host(tpm_host("d", l1_ek(8, 0), 2)))
        .await
        .unwrap();
    // Reinstating the host forgets its revoked identities.
    apply(
        &s,
        StateChange::ReinstateHost {
            host_id: "a".into(),
            at: 11,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.revoked_identity(&revocation_names(&tpm_host("b", l1_ek(7, 65537), 1)))
            .await
            .unwrap(),
        None
    );
    apply(&s, StateChange::Host(tpm_host("a", l1_ek(7, 65537), 1)))
        .await
        .unwrap();
}

async fn finding1_hosts_revoked_before_identities_are_backfilled(backend: Backend) {
    let (_d, s) = store(backend).await;
    apply(&s, StateChange::Host(tpm_host("old", l1_ek(7, 0), 1)))
        .await
        .unwrap();
    apply(&s, revoke_host("old")).await.unwrap();
    // As a store written before revoked identities existed: the revoked
    // host without its names.
    let mut tx = s.begin_write().await.unwrap();
    tx.delete_revoked_identities("old").await.unwrap();
    tx.commit().await.unwrap();
    let names = revocation_names(&tpm_host("old", l1_ek(7, 0), 1));
    assert_eq!(names.len(), 2);
    assert_eq!(s.revoked_identity(&names).await.unwrap(), None);
    assert_eq!(s.backfill_revoked_identities(20).await.unwrap(), 2);
    assert_eq!(
        s.revoked_identity(&names).await.unwrap().as_deref(),
        Some("old")
    );
    assert_eq!(s.backfill_revoked_identities(21).await.unwrap(), 0);
}

/// Status-list slots: unique, a new epoch when the list is full or old,
/// each epoch's revoked indices from the store, retirement once every
/// token of an epoch expired.
async fn status_slots_roll_over_and_list_revocations(backend: Backend) {
    let (_d, s) = store(backend).await;
    let plan = EpochPlan {
        capacity: 3,
        period_secs: 1000,
    };
    // No epoch yet: reading the live ones opens epoch 1.
    let (current, live) = s.live_status_epochs(plan, 0, 10).await.unwrap();
    assert_eq!((current, live.len()), (1, 1));
    let mut slots = Vec::new();
    for _ in 0..7 {
        slots.push(s.allocate_status_slot(plan, 20).await.unwrap());
    }
    let pairs: Vec<(u64, u64)> = slots.iter().map(|x| (x.epoch, x.idx)).collect();
    assert_eq!(
        pairs,
        [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0)]
    );
    // Old enough: a new epoch although 3 is not full.
    let late = s.allocate_status_slot(plan, 1020).await.unwrap();
    assert_eq!((late.epoch, late.idx), (4, 0));

    // Tokens in epoch 2 (idx 1 and 2) and 3; revoke one of epoch 2.
    assert_eq!(apply(&s, StateChange::Host(host("h"))).await, Ok(0));
    for (cti, slot, exp) in [
        (1u8, slots[4], 500),
        (2, slots[5], 2000),
        (3, slots[6], 500),
    ] {
        let mut t = token(cti, "h", exp);
        t.status = Some(slot);
        appraise(
            &s,
            appraisal("h", 100 + i64::from(cti), "affirming"),
            HostStatus::Trusted,
            Some(t.clone()),
            None,
        )
        .await
        .unwrap();
        assert_eq!(s.token(&[cti; 16]).await.unwrap(), Some(t));
    }
    assert_eq!(apply(&s, revoke_token(2, 150)).await, Ok(1));
    let e2 = s.epoch_statuses(2).await.unwrap().unwrap();
    assert_eq!((e2.epoch.capacity, e2.revoked.clone()), (3, vec![2]));
    assert_eq!(e2.version, s.status_version().await.unwrap());
    assert!(s
        .epoch_statuses(3)
        .await
        .unwrap()
        .unwrap()
        .revoked
        .is_empty());
    assert_eq!(s.epoch_statuses(99).await.unwrap(), None);

    // Live at 400: epochs 2 and 3 (unexpired tokens) and 4 (current); 1
    // has no tokens and retired. At 600 only epoch 2's second token lives.
    let live = |cutoff| {
        let s = s.clone();
        async move {
            let (current, live) = s.live_status_epochs(plan, cutoff, 1100).await.unwrap();
            (current, live.iter().map(|e| e.epoch).collect::<Vec<_>>())
        }
    };
    assert_eq!(live(400).await, (4, vec![2, 3, 4]));
    assert_eq!(live(600).await, (4, vec![2, 4]));
    assert_eq!(live(3000).await, (4, vec![4]));
}

/// Regression (`decision_race::signed_tokens_racing_a_revocation` failed in
/// a CI run): a signed token or a request key decided while the host was
/// trusted, and applied after an operator revoked it, was refused as
/// `host_not_fresh`. It is refused as `host_revoked`, as the decision
/// itself says on the revoked host.
async fn changes_decided_before_a_host_revocation_are_refused_as_revoked(backend: Backend) {
    use crate::store::audit::NonceUse;
    let (_d, s) = store(backend).await;
    assert_eq!(apply(&s, StateChange::Host(host("h"))).await, Ok(0));
    appraise(
        &s,
        appraisal("h", 100, "affirming"),
        HostStatus::Trusted,
        None,
        None,
    )
    .await
    .unwrap();
    s.set_host_clock(
        "h",
        Some(ClockState {
            reset_count: 1,
            restart_count: 0,
            clock: 5,
        }),
    )
    .await
    .unwrap();
    let key = RequestKeyRecord {
        host_id: "h".into(),
        key_name: vec![7; 34],
        key_public: vec![8],
        reset_count: 1,
        restart_count: 0,
        certified_at: 100,
    };
    let nonce = |n: &[u8]| NonceUse {
        digest: n.to_vec(),
        expires_at: 1000,
        at: 100,
    };
    let signed = |n: &[u8]| StateChange::SignedToken {
        token: token(2, "h", 1000),
        key_name: vec![7; 34],
        fresh_since: 0,
        nonce: nonce(n),
    };
    let register = |n: &[u8]| StateChange::RequestKey {
        key: key.clone(),
        nonce: nonce(n),
    };
    assert_eq!(apply(&s, register(b"k1")).await, Ok(0));
    assert_eq!(apply(&s, signed(b"s1")).await, Ok(0));
    apply(&s, revoke_host("h")).await.unwrap();
    assert_eq!(
        apply(&s, signed(b"s2")).await,
        Err(ChangeRefused::HostRevoked)
    );
    assert_eq!(
        apply(&s, register(b"k2")).await,
        Err(ChangeRefused::HostRevoked)
    );
}

on_each_backend!(
    changes_decided_before_a_host_revocation_are_refused_as_revoked,
    revocation_cascades_to_descendants_and_blocks_new_children,
    failing_appraisal_and_staleness_revoke_host_tokens,
    revoke_reinstate_and_clock_baseline,
    appraisal_preconditions_are_rechecked_in_the_transaction,
    finding1_revoked_tpm_is_refused_under_any_host_id_until_reinstated,
    finding1_hosts_revoked_before_identities_are_backfilled,
    status_slots_roll_over_and_list_revocations,
);
