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
//!   cleared) undoes it. Revoking a TPM host records its EK key and
//!   certificate (`revocation_names`); an enrollment of a revoked host or
//!   of any TPM with a recorded name is refused (`HostRevoked`).
//! - Staleness applies only to a host still trusted without a passing
//!   attestation since the cutoff.
//! - Request keys and signed tokens need a trusted (and for signed tokens
//!   freshly appraised) host and the host's current key.
//! - An appraisal decision applies only while the host is as the decision
//!   read it (status, clock baseline) and its nonce is unused; the clock
//!   rule itself is part of the decision (`verifier_lib::decision`).

use verifier_lib::audit::{leaf_hash, Hash, MAX_LEAF_LEN};
use verifier_lib::host_clock::ClockTransition;

use super::audit::{AppraisalChange, ChangeRefused, Entry, EntryError, NonceUse, StateChange};
use super::governance::stale_reason;
use super::write_tx::{TokenRoot, WriteTx};
use super::{
    revocation_names, AppraisalRecord, HostRecord, HostStatus, NonceProblem, SnpHostRecord,
    StoreError, TokenRecord,
};

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
        StateChange::Host(h) => {
            // A revoked TPM does not come back: neither under its host id
            // nor under another encoding of its EK or with its certificate.
            let existing = tx.host(&h.id).await?;
            let revoked_row = existing
                .as_ref()
                .is_some_and(|e| e.status == HostStatus::Revoked);
            if revoked_row || tx.revoked_identity(&revocation_names(h)).await?.is_some() {
                return Ok(Err(ChangeRefused::HostRevoked));
            }
            tx.put_host(h).await?;
            let detail = match existing {
                Some(e) => format!("enrolled again (was {})", e.status.as_str()),
                None => "enrollment accepted".to_owned(),
            };
            tx.insert_host_event(&h.id, h.enrolled_at, h.status.as_str(), &detail)
                .await?;
            // A (re-)enrolled host has a new AK: its old certification is void.
            tx.delete_request_key(&h.id).await?;
            Ok(Ok(0))
        }
        StateChange::Appraisal(c) => apply_appraisal(tx, c).await,
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
        StateChange::RequestKey { key, nonce } => {
            if let Err(p) = consume(tx, nonce).await? {
                return Ok(Err(ChangeRefused::Nonce(p)));
            }
            match tx.host(&key.host_id).await?.map(|h| h.status) {
                Some(HostStatus::Trusted) => {}
                Some(HostStatus::Revoked) => return Ok(Err(ChangeRefused::HostRevoked)),
                _ => return Ok(Err(ChangeRefused::HostNotFresh)),
            }
            // The key must belong to the boot the host's baseline records.
            let same_boot = tx.host_clock(&key.host_id).await?.is_some_and(|c| {
                c.reset_count == key.reset_count && c.restart_count == key.restart_count
            });
            if !same_boot {
                return Ok(Err(ChangeRefused::Conflict));
            }
            tx.put_request_key(key).await?;
            Ok(Ok(0))
        }
        StateChange::SignedToken {
            token,
            key_name,
            fresh_since,
            nonce,
        } => {
            if let Err(p) = consume(tx, nonce).await? {
                return Ok(Err(ChangeRefused::Nonce(p)));
            }
            insert_signed_token(tx, token, key_name, *fresh_since).await
        }
        StateChange::DerivedToken {
            token,
            parent_cti,
            host_fresh_since,
        } => {
            let parent_live = tx
                .token_state(parent_cti)
                .await?
                .is_some_and(|p| !p.revoked);
            if !parent_live {
                return Ok(Err(ChangeRefused::ParentRevoked));
            }
            if let Some(refused) = host_unfit(tx, &token.host_id, *host_fresh_since).await? {
                return Ok(Err(refused));
            }
            tx.insert_token(token, Some(parent_cti)).await?;
            Ok(Ok(0))
        }
        StateChange::ActivatePolicy {
            version_id,
            expect_active,
            at,
        } => {
            let actual = tx.policy_pointer(super::PolicySlot::Active).await?;
            if actual != *expect_active {
                return Ok(Err(ChangeRefused::PolicyChanged {
                    expected: *expect_active,
                    actual,
                }));
            }
            tx.record_policy_activation(*version_id, actual, *at)
                .await?;
            Ok(Ok(0))
        }
    }
}

/// Consume the decision's (authenticated) nonce: unexpired, and recorded
/// as used in this transaction unless it already was.
async fn consume<T: WriteTx + ?Sized>(
    tx: &mut T,
    n: &NonceUse,
) -> Result<Result<(), NonceProblem>, StoreError> {
    if n.at >= n.expires_at {
        return Ok(Err(NonceProblem::Expired));
    }
    if tx.insert_used_nonce(&n.digest, n.expires_at).await? {
        Ok(Ok(()))
    } else {
        Ok(Err(NonceProblem::AlreadyUsed))
    }
}

/// The host is trusted with a passing appraisal at or after `since`.
async fn host_unfit<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    since: i64,
) -> Result<Option<ChangeRefused>, StoreError> {
    let host = tx.host(host_id).await?;
    Ok(match host {
        // Revoked since the decision read it: say so, as the decision
        // itself would have (not "not fresh").
        Some(h) if h.status == HostStatus::Revoked => Some(ChangeRefused::HostRevoked),
        Some(h)
            if h.status == HostStatus::Trusted
                && h.last_attested_at.is_some_and(|at| at >= since) =>
        {
            None
        }
        _ => Some(ChangeRefused::HostNotFresh),
    })
}

/// An appraisal decision: consume its nonce, re-check that the host is as
/// the decision read it (status and clock baseline; a host registering must
/// not exist yet), then record the appraisal, the host's new status (a
/// failing host loses its tokens), the clock baseline, the IMA cursor and
/// the token. Returns the tokens revoked.
async fn apply_appraisal<T: WriteTx + ?Sized>(
    tx: &mut T,
    c: &AppraisalChange,
) -> Result<Applied, StoreError> {
    if let Err(p) = consume(tx, &c.nonce).await? {
        return Ok(Err(ChangeRefused::Nonce(p)));
    }
    let host_id = &c.appraisal.host_id;
    let host = tx.host(host_id).await?;
    let unchanged = match (&c.register, &host) {
        (Some(_), Some(_)) => false,
        (_, None) => c.expect.status.is_none(),
        (None, Some(h)) => {
            Some(h.status) == c.expect.status
                && (c.clock.is_none() || tx.host_clock(host_id).await? == c.expect.clock)
        }
    };
    if !unchanged {
        return Ok(Err(ChangeRefused::Conflict));
    }
    if let Some(r) = &c.register {
        register_snp_host(tx, r).await?;
    }
    let revoked = match c.status {
        Some(status) => record_appraisal(tx, &c.appraisal, status, c.token.as_ref()).await?,
        None => {
            tx.insert_appraisal(&c.appraisal).await?;
            0
        }
    };
    // The status change, for the host's timeline (the event kind is the
    // status entered).
    if let (Some(reason), Some(to)) = (c.status_reason, c.status) {
        let from = host.as_ref().map(|h| h.status);
        if from != Some(to) && from != Some(HostStatus::Revoked) {
            let was = from.map_or("not registered", HostStatus::as_str);
            tx.insert_host_event(
                host_id,
                c.appraisal.at,
                to.as_str(),
                &format!("{reason} (was {was})"),
            )
            .await?;
        }
    }
    if let Some(update) = &c.clock {
        let s = update.state;
        tx.set_host_clock(host_id, Some(s)).await?;
        if matches!(
            update.transition,
            ClockTransition::Rebooted | ClockTransition::Resumed
        ) {
            let previous = c.expect.clock;
            let detail = format!(
                "reset_count {} -> {}, restart_count {} -> {}, boot log: {}",
                previous.map_or(0, |p| p.reset_count),
                s.reset_count,
                previous.map_or(0, |p| p.restart_count),
                s.restart_count,
                if update.new_boot_log { "new" } else { "none" },
            );
            tx.insert_host_event(host_id, c.appraisal.at, update.transition.as_str(), &detail)
                .await?;
        }
    }
    if let Some(reason) = &c.clock_refused {
        tx.insert_host_event(host_id, c.appraisal.at, "clock_refused", reason)
            .await?;
    }
    if let Some(cursor) = &c.ima_cursor {
        tx.put_ima_cursor(cursor).await?;
    }
    Ok(Ok(revoked))
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

async fn revoke_host<T: WriteTx + ?Sized>(
    tx: &mut T,
    host_id: &str,
    reason: &str,
    now: i64,
) -> Result<Applied, StoreError> {
    let Some(host) = tx.host(host_id).await? else {
        return Ok(Err(ChangeRefused::UnknownHost));
    };
    tx.set_host_status(host_id, HostStatus::Revoked, Some(reason))
        .await?;
    // The TPM itself is revoked: its EK key and certificate.
    tx.insert_revoked_identities(&revocation_names(&host), host_id, now)
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
    tx.delete_revoked_identities(host_id).await?;
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
    if let Some(refused) = host_unfit(tx, &t.host_id, fresh_since).await? {
        return Ok(Err(refused));
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
