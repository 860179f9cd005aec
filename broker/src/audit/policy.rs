//! Policy activation is a logged decision: the `policy_activated` leaf
//! (policy id, hash, and the hash of the policy it replaces) is committed in
//! the same transaction that moves the store's active pointer
//! (`StateChange::ActivatePolicy`), so a policy is active exactly when its
//! activation is in the log. Importing a version and setting the shadow
//! change no verdict and are not logged.

use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::policy::signing::{check_succession, PolicySignatureError, PolicySigners};
use verifier_lib::policy::{Policy, PolicyError};

use super::{AppendError, AuditLog};
use crate::store::audit::{ChangeRefused, Entry, EntryError, PrepareEntry, StateChange};
use crate::store::{NewPolicyVersion, PolicyVersion, Store, StoreError};

/// How many times an activation is decided again when another one moved
/// the active pointer meanwhile.
const ACTIVATE_ATTEMPTS: u32 = 3;

/// Where an activation is logged.
#[derive(Debug, Clone, Copy)]
pub enum ActivationLog<'a> {
    /// The running broker's audit writer.
    Writer(&'a AuditLog),
    /// The store directly (offline `writ-broker policy activate`); brokers
    /// on the store follow the log and sign checkpoints over the leaf.
    Store(&'a Store),
}

/// Why a policy was not imported or activated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivateError {
    #[error("invalid policy: {0}")]
    Invalid(#[source] PolicyError),
    /// Unsigned, wrongly signed, unversioned, or older than the active one.
    #[error("{0}")]
    Signature(#[source] PolicySignatureError),
    #[error("stored policy version {version_id} has a malformed hash {hash:?}")]
    MalformedHash { version_id: i64, hash: String },
    #[error("the active policy kept changing during {attempts} attempts to activate")]
    Contended { attempts: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("logging the activation: {0}")]
    Audit(#[from] AppendError),
    #[error("logging the activation: {0}")]
    Entry(#[from] EntryError),
}

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The version was already the active one: nothing logged.
    AlreadyActive,
    /// The version became active; its leaf is at `leaf_index`.
    Activated {
        leaf_index: u64,
        previous: Option<PolicyVersion>,
    },
}

/// Check `text` as a policy — and, when `signers` require it, its detached
/// `signature`, and that it would not roll the active policy back — then
/// store it as a version (idempotent by hash) with its signer and
/// signature. A policy refused here writes nothing.
pub async fn import(
    store: &Store,
    text: &str,
    signature: Option<&[u8]>,
    signers: &PolicySigners,
    now: i64,
) -> Result<(PolicyVersion, Policy), ActivateError> {
    let policy = check(signers, text, signature)?;
    check_not_rollback(store, &policy).await?;
    let hash = policy.hash_hex();
    let version = store
        .insert_policy_version(NewPolicyVersion {
            hash: &hash,
            policy_id: &policy.id,
            body: text,
            signer: policy.signer.as_deref(),
            signature: policy.signer.as_ref().and(signature),
            created_at: now,
        })
        .await?;
    Ok((version, policy))
}

/// [`PolicySigners::check`], with a policy that does not parse reported as
/// [`ActivateError::Invalid`].
pub fn check(
    signers: &PolicySigners,
    text: &str,
    signature: Option<&[u8]>,
) -> Result<Policy, ActivateError> {
    signers.check(text, signature).map_err(|e| match e {
        PolicySignatureError::Invalid(e) => ActivateError::Invalid(e),
        other => ActivateError::Signature(other),
    })
}

/// A stored version as a policy, with the signer it was stored with (for
/// the succession rule; its signature was checked when it was imported).
fn stored(version: &PolicyVersion) -> Result<Policy, ActivateError> {
    let mut policy = Policy::parse_toml(&version.body).map_err(ActivateError::Invalid)?;
    policy.signer = version.signer.clone();
    Ok(policy)
}

/// Refuse `candidate` when it would roll the active policy back (an older
/// `version`; a signed policy always has one). [`activate`] checks again
/// against the version it replaces, in the loop whose change re-checks
/// that the active pointer did not move.
async fn check_not_rollback(store: &Store, candidate: &Policy) -> Result<(), ActivateError> {
    let Some(active) = store.policy_in(crate::store::PolicySlot::Active).await? else {
        return Ok(());
    };
    // A stored active version that no longer parses has no version to keep.
    let Ok(active) = stored(&active) else {
        return Ok(());
    };
    check_succession(Some(&active), candidate).map_err(ActivateError::Signature)
}

/// The `policy_activated` leaf of `version`, replacing `previous`.
fn activated_leaf(
    version: &PolicyVersion,
    previous: Option<&PolicyVersion>,
    now: i64,
) -> Result<Leaf, ActivateError> {
    let bytes = |v: &PolicyVersion| {
        hex::decode(&v.hash).map_err(|_| ActivateError::MalformedHash {
            version_id: v.id,
            hash: v.hash.clone(),
        })
    };
    Ok(Leaf::new(
        now,
        Decision::PolicyActivated {
            policy_id: version.policy_id.clone(),
            policy_hash: bytes(version)?,
            previous_policy_hash: previous.map(bytes).transpose()?,
        },
    ))
}

/// Make the stored `version` the active policy, logged as a decision.
pub async fn activate(
    log: ActivationLog<'_>,
    store: &Store,
    version: &PolicyVersion,
    now: i64,
) -> Result<Activation, ActivateError> {
    for _ in 0..ACTIVATE_ATTEMPTS {
        let active = store.policy_pointers().await?.active;
        if active == Some(version.id) {
            return Ok(Activation::AlreadyActive);
        }
        let previous = match active {
            Some(id) => store.policy_version(id).await?,
            None => None,
        };
        if let Some(previous) = &previous {
            if let Ok(previous) = stored(previous) {
                check_succession(Some(&previous), &stored(version)?)
                    .map_err(ActivateError::Signature)?;
            }
        }
        let entry = Entry {
            change: StateChange::ActivatePolicy {
                version_id: version.id,
                expect_active: active,
                at: now,
            },
            leaves: vec![activated_leaf(version, previous.as_ref(), now)?],
        };
        let outcome = match log {
            ActivationLog::Writer(audit) => match audit.apply(entry.change, entry.leaves).await {
                Ok(a) => Ok(a.first_index),
                Err(AppendError::Entry(e)) => Err(e),
                Err(e) => return Err(e.into()),
            },
            ActivationLog::Store(store) => {
                let batch: Vec<PrepareEntry> = vec![Box::new(move |_| Ok(entry))];
                match store.append_audit_batch(batch).await?.pop() {
                    Some(Ok(a)) => Ok(a.first_index),
                    Some(Err(e)) => Err(e),
                    None => Err(EntryError::Store(StoreError::Corrupt {
                        what: "audit batch outcome",
                        value: "none".into(),
                    })),
                }
            }
        };
        match outcome {
            Ok(leaf_index) => {
                tracing::warn!(policy_id = %version.policy_id, hash = %version.hash, version = version.id, leaf_index, "policy activated");
                return Ok(Activation::Activated {
                    leaf_index,
                    previous,
                });
            }
            Err(EntryError::Refused(ChangeRefused::PolicyChanged { .. })) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ActivateError::Contended {
        attempts: ACTIVATE_ATTEMPTS,
    })
}
