//! Policy versions, pointers, activations and shadow differences, run
//! through every backend; and activation as a logged decision
//! (`audit::policy`) on the store directly.

use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::policy::signing::PolicySigners;

use crate::audit::policy::{activate, import, ActivateError, Activation, ActivationLog};
use crate::store::audit::{ChangeRefused, StateChange};
use crate::store::test_store::{apply, on_each_backend, store, Backend};
use crate::store::*;

fn new_version<'a>(hash: &'a str, body: &'a str, at: i64) -> NewPolicyVersion<'a> {
    NewPolicyVersion {
        hash,
        policy_id: "p",
        body,
        signer: None,
        signature: None,
        created_at: at,
    }
}

async fn versions_are_idempotent_by_hash(backend: Backend) {
    let (_d, s) = store(backend).await;
    let a = s
        .insert_policy_version(new_version("aa", "one", 10))
        .await
        .unwrap();
    // The same hash again keeps the first row (its time and body).
    let again = s
        .insert_policy_version(new_version("aa", "other", 20))
        .await
        .unwrap();
    assert_eq!(again, a);
    assert_eq!(a.created_at, 10);
    assert_eq!(a.body, "one");
    assert_eq!(a.activated_at, None);
    let b = s
        .insert_policy_version(new_version("bb", "two", 30))
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(s.policy_version(b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(s.policy_version_by_hash("bb").await.unwrap(), Some(b));
    assert_eq!(s.policy_version_by_hash("cc").await.unwrap(), None);
    assert_eq!(
        s.policy_pointers().await.unwrap(),
        PolicyPointers::default()
    );
    assert_eq!(s.policy_in(PolicySlot::Active).await.unwrap(), None);
}

async fn a_signature_attaches_to_a_version_stored_unsigned(backend: Backend) {
    let (_d, s) = store(backend).await;
    let unsigned = s
        .insert_policy_version(new_version("aa", "one", 10))
        .await
        .unwrap();
    assert_eq!((unsigned.signer, unsigned.signature), (None, None));
    // The same text imported signed gets the signature, nothing else.
    let signed = s
        .insert_policy_version(NewPolicyVersion {
            signer: Some("kid-1"),
            signature: Some(b"sig-1"),
            ..new_version("aa", "other", 20)
        })
        .await
        .unwrap();
    assert_eq!(signed.id, unsigned.id);
    assert_eq!((signed.body.as_str(), signed.created_at), ("one", 10));
    assert_eq!(signed.signer.as_deref(), Some("kid-1"));
    assert_eq!(signed.signature.as_deref(), Some(&b"sig-1"[..]));
    // A later signature does not replace it, and an unsigned import keeps it.
    for (signer, signature) in [(Some("kid-2"), Some(&b"sig-2"[..])), (None, None)] {
        let again = s
            .insert_policy_version(NewPolicyVersion {
                signer,
                signature,
                ..new_version("aa", "one", 30)
            })
            .await
            .unwrap();
        assert_eq!(again, signed);
        assert_eq!(again.signature, signed.signature);
    }
}

fn activation(version_id: i64, expect_active: Option<i64>, at: i64) -> StateChange {
    StateChange::ActivatePolicy {
        version_id,
        expect_active,
        at,
    }
}

async fn activations_move_the_pointer_in_order(backend: Backend) {
    let (_d, s) = store(backend).await;
    let a = s
        .insert_policy_version(new_version("aa", "one", 1))
        .await
        .unwrap();
    let b = s
        .insert_policy_version(new_version("bb", "two", 2))
        .await
        .unwrap();
    apply(&s, activation(a.id, None, 10)).await.unwrap();
    apply(&s, activation(b.id, Some(a.id), 20)).await.unwrap();
    apply(&s, activation(a.id, Some(b.id), 30)).await.unwrap();
    let active = s.policy_in(PolicySlot::Active).await.unwrap().unwrap();
    assert_eq!((active.id, active.activated_at), (a.id, Some(30)));
    let h = s.policy_history(10).await.unwrap();
    let seen: Vec<_> = h
        .iter()
        .map(|r| (r.at, r.hash.as_str(), r.previous_hash.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (30, "aa", Some("bb")),
            (20, "bb", Some("aa")),
            (10, "aa", None)
        ]
    );
    // Bounded, newest first.
    let h = s.policy_history(2).await.unwrap();
    assert_eq!(h.iter().map(|r| r.at).collect::<Vec<_>>(), vec![30, 20]);
    // Decided on a pointer that moved since: refused, nothing changes.
    assert_eq!(
        apply(&s, activation(b.id, Some(b.id), 40)).await,
        Err(ChangeRefused::PolicyChanged {
            expected: Some(b.id),
            actual: Some(a.id)
        })
    );
    assert_eq!(s.policy_pointers().await.unwrap().active, Some(a.id));
    assert_eq!(s.policy_history(10).await.unwrap().len(), 3);
}

async fn shadow_pointer_and_promotion(backend: Backend) {
    let (_d, s) = store(backend).await;
    let a = s
        .insert_policy_version(new_version("aa", "one", 1))
        .await
        .unwrap();
    let b = s
        .insert_policy_version(new_version("bb", "two", 2))
        .await
        .unwrap();
    apply(&s, activation(a.id, None, 10)).await.unwrap();
    s.set_policy_shadow(Some(b.id), 11).await.unwrap();
    assert_eq!(
        s.policy_pointers().await.unwrap(),
        PolicyPointers {
            active: Some(a.id),
            shadow: Some(b.id)
        }
    );
    assert_eq!(
        s.policy_in(PolicySlot::Shadow).await.unwrap(),
        Some(b.clone())
    );
    // Activating another version keeps the candidate.
    let c = s
        .insert_policy_version(new_version("cc", "three", 3))
        .await
        .unwrap();
    apply(&s, activation(c.id, Some(a.id), 12)).await.unwrap();
    assert_eq!(s.policy_pointers().await.unwrap().shadow, Some(b.id));
    // Promoting the candidate clears the shadow.
    apply(&s, activation(b.id, Some(c.id), 13)).await.unwrap();
    assert_eq!(
        s.policy_pointers().await.unwrap(),
        PolicyPointers {
            active: Some(b.id),
            shadow: None
        }
    );
    s.set_policy_shadow(Some(a.id), 14).await.unwrap();
    s.set_policy_shadow(None, 15).await.unwrap();
    assert_eq!(s.policy_pointers().await.unwrap().shadow, None);
}

fn difference(host: &str, at: i64, shadow_hash: &str) -> ShadowDifference {
    ShadowDifference {
        host_id: host.into(),
        at,
        active_hash: "aa".into(),
        shadow_hash: shadow_hash.into(),
        active_verdict: "affirming".into(),
        shadow_verdict: "contraindicated".into(),
        active_failures: "[]".into(),
        shadow_failures: r#"[{"rule":"pcr_not_allowed"}]"#.into(),
    }
}

async fn shadow_differences_newest_first_per_candidate(backend: Backend) {
    let (_d, s) = store(backend).await;
    for (host, at, hash) in [
        ("h1", 1, "bb"),
        ("h2", 2, "bb"),
        ("h1", 3, "cc"),
        ("h1", 4, "bb"),
    ] {
        s.insert_shadow_difference(&difference(host, at, hash))
            .await
            .unwrap();
    }
    let rows = s.shadow_differences("bb", 10).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.host_id.as_str(), r.at))
            .collect::<Vec<_>>(),
        vec![("h1", 4), ("h2", 2), ("h1", 1)]
    );
    assert_eq!(rows[0], difference("h1", 4, "bb"));
    assert_eq!(s.shadow_differences("bb", 1).await.unwrap().len(), 1);
    assert_eq!(s.shadow_differences("dd", 10).await.unwrap(), Vec::new());
}

const POLICY_A: &str = "id = \"a\"\n";
const POLICY_B: &str = "id = \"b\"\n# the candidate\n";

async fn activation_is_logged_with_the_previous_hash(backend: Backend) {
    let (_d, s) = store(backend).await;
    let (va, pa) = import(&s, POLICY_A, None, &PolicySigners::default(), 5)
        .await
        .unwrap();
    // Importing again is harmless.
    assert_eq!(
        import(&s, POLICY_A, None, &PolicySigners::default(), 6)
            .await
            .unwrap()
            .0,
        va
    );
    let first = activate(ActivationLog::Store(&s), &s, &va, 10)
        .await
        .unwrap();
    assert_eq!(
        first,
        Activation::Activated {
            leaf_index: 0,
            previous: None
        }
    );
    assert_eq!(
        activate(ActivationLog::Store(&s), &s, &va, 11)
            .await
            .unwrap(),
        Activation::AlreadyActive
    );
    let (vb, pb) = import(&s, POLICY_B, None, &PolicySigners::default(), 12)
        .await
        .unwrap();
    let second = activate(ActivationLog::Store(&s), &s, &vb, 13)
        .await
        .unwrap();
    assert!(
        matches!(&second, Activation::Activated { leaf_index: 1, previous: Some(p) } if p.id == va.id),
        "{second:?}"
    );
    let rows = s.audit_leaves(0, 10).await.unwrap();
    let leaves: Vec<Leaf> = rows
        .iter()
        .map(|r| Leaf::decode(&r.leaf).unwrap())
        .collect();
    assert_eq!(
        leaves
            .iter()
            .map(|l| l.decision.clone())
            .collect::<Vec<_>>(),
        vec![
            Decision::PolicyActivated {
                policy_id: "a".into(),
                policy_hash: pa.hash.clone(),
                previous_policy_hash: None
            },
            Decision::PolicyActivated {
                policy_id: "b".into(),
                policy_hash: pb.hash.clone(),
                previous_policy_hash: Some(pa.hash.clone())
            },
        ]
    );
    // An invalid policy is refused with its typed error; nothing changes.
    let before = s.policy_history(10).await.unwrap();
    let err = import(&s, "id = \"\"\n", None, &PolicySigners::default(), 14)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ActivateError::Invalid(verifier_lib::policy::PolicyError::EmptyId)
        ),
        "{err}"
    );
    assert_eq!(s.policy_history(10).await.unwrap(), before);
    assert_eq!(s.audit_leaves(0, 10).await.unwrap().len(), 2);
}

on_each_backend!(
    versions_are_idempotent_by_hash,
    a_signature_attaches_to_a_version_stored_unsigned,
    activations_move_the_pointer_in_order,
    shadow_pointer_and_promotion,
    shadow_differences_newest_first_per_candidate,
    activation_is_logged_with_the_previous_hash,
);
