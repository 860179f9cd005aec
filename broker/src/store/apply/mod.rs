//! What a state change does, for every backend: the rules run here, against
//! the small primitives of a [`WriteTx`]; the backend only provides the
//! transaction (for the audit writer: one per batch, one savepoint per
//! entry).
//!
//! - Revocation cascades: revoking a host's, a token's or a workload's
//!   tokens revokes the whole subtree derived from them, and bumps the
//!   status-list version when anything changed. A failing, revoked or stale
//!   host loses its tokens.
//! - Lineage: a derived token is recorded only under a recorded, unrevoked
//!   parent.
//! - A revoked host stays revoked through appraisals; only reinstatement
//!   (from `revoked`, to `enrolled`, clock baseline and request key
//!   cleared) undoes it.
//! - Staleness applies only to a host still trusted without a passing
//!   attestation since the cutoff.
//! - Request keys and signed tokens need a trusted (and for signed tokens
//!   freshly appraised) host and the host's current key.
//! - The TPM clock must progress ([`check_progress`]).

use verifier_lib::audit::{leaf_hash, Hash, MAX_LEAF_LEN};
use verifier_lib::host_clock::{check_progress, ClockState, ClockTransition, RebootEvidence};

use super::audit::{ChangeRefused, Entry, EntryError, StateChange};
use super::governance::{stale_reason, ClockCheck};
use super::write_tx::{TokenRoot, WriteTx};
use super::{AppraisalRecord, HostRecord, HostStatus, SnpHostRecord, StoreError, TokenRecord};

/// The outcome of a state change: tokens revoked, or why it did not apply.
pub type Applied = Result<u64, ChangeRefused>;

/// Applies the entry's state change and inserts its leaves from `first`.
/// `Ok(Err(_))` is a refusal of this entry alone (e.g. an oversized leaf);
/// the caller rolls its savepoint back.
pub async fn write_entry<T: WriteTx + ?Sized>(
    tx: &mut T,
    first: u64,
    entry: &Entry,
) -> Result<Result<(Vec<Hash>, u64), EntryError>, StoreError> {
    let tokens_revoked = match apply_change(tx, &entry.change).await? {
        Ok(n) => n,
        Err(refused) => return Ok(Err(EntryError::Refused(refused))),
    };
    let mut hashes = Vec::with_capacity(entry.leaves.len());
    let mut index = first;
    for leaf in &entry.leaves {
        let bytes = leaf.encode();
        if bytes.is_empty() || bytes.len() > MAX_LEAF_LEN {
            return Ok(Err(EntryError::LeafTooLarge {
                index,
                max: MAX_LEAF_LEN,
                actual: bytes.len(),
            }));
        }
        let h = leaf_hash(&bytes);
        tx.insert_audit_leaf(index, &bytes, &h, leaf.time).await?;
        hashes.push(h);
        index = index.saturating_add(1);
    }
    Ok(Ok((hashes, tokens_revoked)))
}

/// Applies one state change: tokens revoked, or why it does not apply.
pub async fn apply_change<T: WriteTx + ?Sized>(
    tx: &mut T,
    change: &StateChange,
) -> Result<Applied, StoreError> {
    match change {
        StateChange::Nothing => Ok(Ok(0)),
        StateChange::Nonce {
            nonce,
            host_id,
            expires_at,
        } => {
            tx.insert_nonce(nonce, host_id, *expires_at).await?;
            Ok(Ok(0))
        }
        StateChange::Host(h) => {
            tx.put_host(h).await?;
            // A (re-)enrolled host has a new AK: its old certification is void.
            tx.delete_request_key(&h.id).await?;
            Ok(Ok(0))
        }
        StateChange::Appraisal {
            appraisal,
            status,
            token,
            ima_cursor,
        } => {
            let revoked = record_appraisal(tx, appraisal, *status, token.as_ref()).await?;
            if let Some(c) = ima_cursor {
                tx.put_ima_cursor(c).await?;
            }
            Ok(Ok(revoked))
        }
        StateChange::SnpAppraisal {
            appraisal,
            status,
            token,
            register,
        } => {
            if let Some(r) = register {
                register_snp_host(tx, r).await?;
            }
            Ok(Ok(
                record_appraisal(tx, appraisal, *status, token.as_ref()).await?
            ))
        }
        StateChange::RevokeHost {
            host_id,
            reason,
            at,
        } => revoke_host(tx, host_id, reason, *at).await,
        StateChange::ReinstateHost { host_id, at } => reinstate_host(tx, host_id, *at).await,
        StateChange::MarkStale {
            host_id,
            cutoff,
            at,
        } => mark_stale(tx, host_id, *cutoff, *at).await,
        StateChange::RevokeToken { cti, reason, at } => {
            if tx.token_state(cti).await?.is_none() {
                return Ok(Err(ChangeRefused::UnknownToken));
            }
            Ok(Ok(
                revoke_tree(tx, TokenRoot::Token(cti), reason, *at).await?
            ))
        }
        StateChange::RevokeWorkload {
            workload,
            reason,
            at,
        } => Ok(Ok(revoke_tree(
            tx,
            TokenRoot::Workload(workload),
            reason,
            *at,
        )
        .await?)),
        StateChange::RequestKey(k) => {
            if !host_has_status(tx, &k.host_id, HostStatus::Trusted).await? {
                return Ok(Err(ChangeRefused::HostNotFresh));
            }
            tx.put_request_key(k).await?;
            Ok(Ok(0))
        }
        StateChange::SignedToken {
            token,
            key_name,
            fresh_since,
        } => insert_signed_token(tx, token, key_name, *fresh_since).await,
        StateChange::DerivedToken { token, parent_cti } => {
            let parent_live = tx
                .token_state(parent_cti)
                .await?
                .is_some_and(|p| !p.revoked);
            if !parent_live {
                return Ok(Err(ChangeRefused::ParentRevoked));
            }
            tx.insert_token(token, Some(parent_cti)).await?;
            Ok(Ok(0))
        }
    }
}

/// Check the quote's clock against the host's baseline and, when it may
/// follow it, make it the new baseline; reboots, resumes and refusals are
/// recorded as host events.
pub async fn check_and_record_clock<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    current: ClockState,
    boot: RebootEvidence,
    now: i64,
) -> Result<ClockCheck, StoreError> {
    let previous = tx.host_clock(host_id).await?;
    let result = check_progress(previous.as_ref(), &current, boot);
    match &result {
        Ok(t) => {
            tx.set_host_clock(host_id, Some(current)).await?;
            if matches!(t, ClockTransition::Rebooted | ClockTransition::Resumed) {
                let detail = format!(
                    "reset_count {} -> {}, restart_count {} -> {}, boot log: {}",
                    previous.map_or(0, |p| p.reset_count),
                    current.reset_count,
                    previous.map_or(0, |p| p.restart_count),
                    current.restart_count,
                    if boot.new_boot_log { "new" } else { "none" }
                );
                tx.insert_host_event(host_id, now, t.as_str(), &detail)
                    .await?;
            }
        }
        Err(f) => {
            tx.insert_host_event(host_id, now, "clock_refused", &f.to_string())
                .await?;
        }
    }
    Ok(result)
}

/// An appraisal, the host's new status (a revoked host stays revoked) and
/// the token when one was minted. A failing host's tokens are revoked with
/// it; returns how many.
async fn record_appraisal<T: WriteTx + ?Sized>(
    tx: &mut T,
    a: &AppraisalRecord,
    status: HostStatus,
    token: Option<&TokenRecord>,
) -> Result<u64, StoreError> {
    tx.insert_appraisal(a).await?;
    if let Some(mut host) = tx.host(&a.host_id).await? {
        if host.status != HostStatus::Revoked {
            host.status = status;
            host.policy_id = Some(a.policy_id.clone());
            if status == HostStatus::Trusted {
                host.last_attested_at = Some(a.at);
                host.last_failure = None;
            } else {
                host.last_failure = Some(a.failures.clone());
            }
            tx.put_host(&host).await?;
        }
    }
    let revoked = if status == HostStatus::Failed {
        revoke_host_tokens(tx, &a.host_id, "host_failed", a.at).await?
    } else {
        0
    };
    if let Some(t) = token {
        tx.insert_token(t, None).await?;
    }
    Ok(revoked)
}

/// An SNP host's first affirming appraisal registers it: a `hosts` row
/// (unless one exists) and its registration.
async fn register_snp_host<T: WriteTx + ?Sized>(
    tx: &mut T,
    r: &SnpHostRecord,
) -> Result<(), StoreError> {
    if tx.host(&r.host_id).await?.is_none() {
        tx.put_host(&HostRecord {
            id: r.host_id.clone(),
            status: HostStatus::Enrolled,
            ek_public: Vec::new(),
            ek_cert_digest: r.signer_cert_digest.clone(),
            ak_public: Vec::new(),
            ak_name: Vec::new(),
            enrolled_at: r.registered_at,
            last_attested_at: None,
            last_failure: None,
            policy_id: None,
        })
        .await?;
    }
    tx.insert_snp_host_if_absent(r).await
}

async fn host_has_status<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    status: HostStatus,
) -> Result<bool, StoreError> {
    Ok(tx.host(host_id).await?.is_some_and(|h| h.status == status))
}

async fn revoke_host<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    reason: &str,
    now: i64,
) -> Result<Applied, StoreError> {
    if tx.host(host_id).await?.is_none() {
        return Ok(Err(ChangeRefused::UnknownHost));
    }
    tx.set_host_status(host_id, HostStatus::Revoked, Some(reason))
        .await?;
    tx.insert_host_event(host_id, now, "revoked", reason)
        .await?;
    Ok(Ok(
        revoke_host_tokens(tx, host_id, "host_revoked", now).await?
    ))
}

async fn reinstate_host<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    now: i64,
) -> Result<Applied, StoreError> {
    match tx.host(host_id).await? {
        None => return Ok(Err(ChangeRefused::UnknownHost)),
        Some(h) if h.status == HostStatus::Revoked => {}
        Some(_) => return Ok(Err(ChangeRefused::HostNotRevoked)),
    }
    tx.set_host_status(host_id, HostStatus::Enrolled, None)
        .await?;
    tx.set_host_clock(host_id, None).await?;
    tx.delete_request_key(host_id).await?;
    tx.insert_host_event(host_id, now, "reinstated", "revoked -> enrolled")
        .await?;
    Ok(Ok(0))
}

async fn mark_stale<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    cutoff: i64,
    now: i64,
) -> Result<Applied, StoreError> {
    let candidate = tx.host(host_id).await?.is_some_and(|h| {
        h.status == HostStatus::Trusted && h.last_attested_at.is_none_or(|at| at < cutoff)
    });
    if !candidate {
        return Ok(Err(ChangeRefused::HostNotStale));
    }
    let reason = stale_reason(cutoff);
    tx.set_host_status(host_id, HostStatus::Stale, Some(&reason))
        .await?;
    tx.insert_host_event(host_id, now, "stale", &reason).await?;
    Ok(Ok(revoke_host_tokens(tx, host_id, "host_stale", now).await?))
}

/// Record a token minted on a signed request, only if `key_name` is still
/// the host's request key and the host is trusted, attested at or after
/// `fresh_since`.
async fn insert_signed_token<T: WriteTx + ?Sized>(
    tx: &mut T,
    t: &TokenRecord,
    key_name: &[u8],
    fresh_since: i64,
) -> Result<Applied, StoreError> {
    let key_ok = tx
        .request_key(&t.host_id)
        .await?
        .is_some_and(|k| k.key_name == key_name);
    if !key_ok {
        return Ok(Err(ChangeRefused::RequestKeyUnknown));
    }
    let fresh = tx.host(&t.host_id).await?.is_some_and(|h| {
        h.status == HostStatus::Trusted && h.last_attested_at.is_some_and(|at| at >= fresh_since)
    });
    if !fresh {
        return Ok(Err(ChangeRefused::HostNotFresh));
    }
    tx.insert_token(t, None).await?;
    Ok(Ok(0))
}

/// Revoke every token of a host (and their descendants), recording a host
/// event when any was revoked.
async fn revoke_host_tokens<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let n = revoke_tree(tx, TokenRoot::Host(host_id), reason, now).await?;
    if n > 0 {
        tx.insert_host_event(
            host_id,
            now,
            "tokens_revoked",
            &format!("{n} tokens: {reason}"),
        )
        .await?;
    }
    Ok(n)
}

/// Mark the tokens selected by `root`, and every token derived from them,
/// revoked; bump the status-list version when anything changed.
async fn revoke_tree<T: WriteTx + ?Sized>(
    tx: &mut T,
    root: TokenRoot<'_>,
    reason: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let ctis = tx.token_subtree(root).await?;
    let n = tx.revoke_ctis(&ctis, reason, now).await?;
    if n > 0 {
        tx.bump_status_version().await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
