//! Derived tokens: a narrower child of a presented, key-bound, unrevoked
//! parent token, proven by a proof of possession of the parent's `cnf` key.
//!
//! The proof's signature, request and window are checked first, but it is
//! recorded in the replay cache only after the parent was read back as
//! issued here and unrevoked and its host may derive, right before the
//! child is committed: a request refused for any other reason takes no room
//! in the cache, and the cache's per-key bound keeps one parent key from
//! filling it for the others.

use std::sync::Mutex;

use verifier_lib::decision::grant::{host_may_derive, HostStanding};
use verifier_lib::decision::Denial;
use verifier_lib::lineage::{self, LineageError};
use verifier_lib::pop::{self, CheckedProof, PopError, RequestContext, Window};
use verifier_lib::token::{self, Claims, Expectations, Lineage, TokenError, TokenVerifier};

use super::{with_retry, DecisionError};
use crate::mint::{self, Minted};
use crate::state::AppState;
use crate::store::audit::{Entry, EntryError, StateChange};

/// Why a child token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeriveError {
    #[error("parent token: {0}")]
    ParentInvalid(TokenError),
    #[error(transparent)]
    Proof(PopError),
    #[error("the parent token was not issued here")]
    ParentUnknown,
    #[error("the parent token is revoked")]
    ParentRevoked,
    #[error("the parent token has expired")]
    ParentExpired,
    #[error(transparent)]
    Lineage(LineageError),
    #[error(transparent)]
    Decision(#[from] DecisionError),
}

/// What the child asks for.
#[derive(Debug, Clone)]
pub struct DeriveRequest<'a> {
    pub parent: &'a [u8],
    pub proof: &'a [u8],
    /// The request the proof signs: method, path and body digest.
    pub context: RequestContext<'a>,
    pub cnf: token::VerifyingKey,
    pub aud: Option<&'a str>,
    pub scope: &'a [String],
    pub lifetime_secs: Option<u32>,
}

/// The minted child and its depth.
#[derive(Debug)]
pub struct Derived {
    pub minted: Minted,
    pub depth: u8,
}

/// Verify the parent and its proof, decide, and apply the child token.
pub async fn derive(st: &AppState, req: DeriveRequest<'_>) -> Result<Derived, DeriveError> {
    let now = st.now();
    let verifier = TokenVerifier::new(
        st.key_set_at(now),
        Expectations {
            issuer: st.config.tokens.issuer.clone(),
            audience: token::Audience::Any,
            leeway_secs: st.config.tokens.leeway_secs,
            max_lifetime_secs: i64::from(verifier_lib::policy::HARD_MAX_TOKEN_LIFETIME_SECS),
            require_workload_digest: false,
        },
    );
    let parent = verifier
        .verify(req.parent, now)
        .map_err(DeriveError::ParentInvalid)?;
    let window = Window {
        max_age_secs: st.config.lineage.pop_max_age_secs,
        max_future_secs: st.config.tokens.leeway_secs.max(0),
    };
    let proof =
        pop::check(req.proof, &parent, &req.context, now, window).map_err(DeriveError::Proof)?;
    let depth = lineage::child_depth(&parent.claims).map_err(DeriveError::Lineage)?;
    let lifetime = req.lifetime_secs.map_or(i64::MAX, i64::from);
    let exp = parent.claims.exp.min(now.saturating_add(lifetime));
    if exp <= now {
        return Err(DeriveError::ParentExpired);
    }
    let cti = mint::new_cti().map_err(|e| DeriveError::Decision(e.into()))?;
    let child = Claims {
        iss: parent.claims.iss.clone(),
        sub: parent.claims.sub.clone(),
        aud: req
            .aud
            .map_or_else(|| parent.claims.aud.clone(), str::to_owned),
        exp,
        nbf: now.max(parent.claims.nbf),
        iat: now,
        cti,
        eat_nonce: None,
        eat_profile: token::PROFILE.to_owned(),
        appraisal: parent.claims.appraisal.clone(),
        workload_digest: parent.claims.workload_digest.clone(),
        cnf: Some(req.cnf.clone()),
        lineage: Some(Lineage {
            parent_cti: parent.claims.cti.clone(),
            parent_digest: parent.digest.clone(),
            depth,
        }),
        scope: req.scope.to_vec(),
        audit_index: None,
        // Never wider than the parent (checked by `check_narrower`).
        offline_ok: parent.claims.offline_ok,
        status: None,
    };
    lineage::check_narrower(&parent.claims, &child).map_err(DeriveError::Lineage)?;
    let parent_cti = parent.claims.cti.clone();
    let pending = Mutex::new(Some(proof));
    let minted = with_retry(|| async {
        match apply(st, &parent_cti, child.clone(), &pending, now).await {
            Ok(m) => Ok(Ok(m)),
            Err(DeriveError::Decision(d)) => Err(d),
            Err(other) => Ok(Err(other)),
        }
    })
    .await??;
    tracing::info!(cti = %hex::encode(&minted.record.cti), parent = %hex::encode(&parent_cti), depth, "derived token issued");
    Ok(Derived { minted, depth })
}

fn replay_cache_poisoned<T>(_: T) -> DeriveError {
    DeriveError::Decision(DecisionError::Internal {
        what: "replay cache",
        reason: "poisoned".into(),
    })
}

/// Record the checked proof as used, once per request: a pass retried after
/// a conflict finds it recorded already.
fn record_proof(
    st: &AppState,
    pending: &Mutex<Option<CheckedProof>>,
    now: i64,
) -> Result<(), DeriveError> {
    let proof = pending.lock().map_err(replay_cache_poisoned)?.take();
    if let Some(proof) = proof {
        let mut cache = st.governance.replay.lock().map_err(replay_cache_poisoned)?;
        proof.record(&mut *cache, now).map_err(DeriveError::Proof)?;
    }
    Ok(())
}

/// Read the parent's and the host's state, decide, record the proof, apply.
async fn apply(
    st: &AppState,
    parent_cti: &[u8],
    child: Claims,
    pending: &Mutex<Option<CheckedProof>>,
    now: i64,
) -> Result<Minted, DeriveError> {
    let state = st
        .store
        .token_state(parent_cti)
        .await
        .map_err(DecisionError::from)?
        .ok_or(DeriveError::ParentUnknown)?;
    if state.revoked {
        return Err(DeriveError::ParentRevoked);
    }
    let host = st
        .store
        .host(&child.sub)
        .await
        .map_err(DecisionError::from)?
        .ok_or_else(|| DecisionError::UnknownHost {
            host: child.sub.clone(),
        })?;
    let host_fresh_since = host_may_derive(
        HostStanding {
            host_id: &host.id,
            status: host.status,
            last_pass: host.last_attested_at,
        },
        st.config.hosts.stale_after_secs(),
        now,
    )
    .map_err(|denial: Denial| DecisionError::Denied {
        denial,
        appraisal: None,
    })?;
    // Every check passed: only now is the proof remembered (and a replay
    // refused).
    record_proof(st, pending, now)?;
    // Minted inside the audit writer: the child carries the index of its own
    // `token_minted` leaf and exists only if that leaf, and its record under
    // an unrevoked parent and a fresh host, commit.
    let key = st.signing_key.clone();
    let policy_id = state.record.policy_id.clone();
    let parent_cti = parent_cti.to_vec();
    // The child has a status-list slot of its own: revoking it leaves the
    // parent valid; revoking the parent revokes it too (the store's cascade).
    let slot = crate::governance::Governance::allocate(&st.store, &st.config, now)
        .await
        .map_err(|e| DeriveError::Decision(e.into()))?;
    let (_, minted) = st
        .audit
        .commit_with(move |index| {
            let mut child = child;
            child.audit_index = Some(index);
            let m = mint::sign(&child, &key, &policy_id, &slot).map_err(EntryError::Mint)?;
            let leaf = crate::audit::leaves::token_minted(&m.record, Some(&parent_cti), child.iat);
            let entry = Entry {
                change: StateChange::DerivedToken {
                    token: m.record.clone(),
                    parent_cti,
                    host_fresh_since,
                },
                leaves: vec![leaf],
            };
            Ok((entry, m))
        })
        .await
        .map_err(DecisionError::from)?;
    Ok(minted)
}
