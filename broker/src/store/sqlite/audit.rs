//! SQLite side of the audit log: batched appends in one write transaction,
//! leaf and checkpoint reads.

use sqlx::{Acquire as _, Row, SqliteConnection};
use verifier_lib::audit::{leaf_hash, Hash, MAX_LEAF_LEN};

use super::{governance, request_key, SqliteStore};
use crate::store::audit::{
    to_i64, to_u64, Appended, ChangeRefused, CheckpointRow, Entry, EntryError, LeafRow,
    PrepareEntry, StateChange,
};
use crate::store::StoreError;

impl SqliteStore {
    /// Appends a batch of entries in ONE transaction (group commit). The
    /// outer error means nothing was committed; otherwise each entry has its
    /// own outcome, in order.
    pub async fn append_audit_batch(
        &self,
        batch: Vec<PrepareEntry>,
    ) -> Result<Vec<Result<Appended, EntryError>>, StoreError> {
        // IMMEDIATE: take the write lock first, so the next index read below
        // cannot go stale before this transaction commits.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_leaves")
            .fetch_one(&mut *tx)
            .await?;
        let mut next = to_u64("audit_leaves.idx", next)?;
        let mut out = Vec::with_capacity(batch.len());
        for prepare in batch {
            let entry = match prepare(next) {
                Ok(e) => e,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let mut sp = (&mut *tx).begin().await?;
            match write_entry(&mut sp, next, &entry).await {
                Ok(Ok((hashes, tokens_revoked))) => {
                    sp.commit().await?;
                    let first_index = next;
                    next = next.saturating_add(u64::try_from(hashes.len()).unwrap_or(u64::MAX));
                    out.push(Ok(Appended {
                        first_index,
                        leaf_hashes: hashes,
                        tokens_revoked,
                    }));
                }
                Ok(Err(e)) => {
                    sp.rollback().await?;
                    out.push(Err(e));
                }
                Err(e) => {
                    sp.rollback().await?;
                    out.push(Err(EntryError::Store(e)));
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Leaf hashes with index `>= from`, in index order, at most `limit`.
    pub async fn audit_leaf_hashes(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, leaf_hash FROM audit_leaves WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(to_i64("from", from)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let idx = to_u64("audit_leaves.idx", r.try_get("idx")?)?;
                let h: Vec<u8> = r.try_get("leaf_hash")?;
                let h: Hash = h.try_into().map_err(|v: Vec<u8>| StoreError::Corrupt {
                    what: "audit_leaves.leaf_hash",
                    value: hex::encode(v),
                })?;
                Ok((idx, h))
            })
            .collect()
    }

    /// Leaf rows with `start <= index < end`, in index order.
    pub async fn audit_leaves(&self, start: u64, end: u64) -> Result<Vec<LeafRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, leaf, leaf_hash, time FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(to_i64("start", start)?)
        .bind(to_i64("end", end)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LeafRow {
                    index: to_u64("audit_leaves.idx", r.try_get("idx")?)?,
                    leaf: r.try_get("leaf")?,
                    leaf_hash: r.try_get("leaf_hash")?,
                    time: r.try_get("time")?,
                })
            })
            .collect()
    }

    pub async fn insert_audit_checkpoint(&self, cp: &CheckpointRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_checkpoints (size, note, created_at) VALUES ($1, $2, $3)")
            .bind(to_i64("size", cp.size)?)
            .bind(&cp.note)
            .bind(cp.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Checkpoints with size `>= from_size`, in issue order.
    pub async fn audit_checkpoints(
        &self,
        from_size: u64,
    ) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT size, note, created_at FROM audit_checkpoints WHERE size >= $1 ORDER BY id",
        )
        .bind(to_i64("from_size", from_size)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// The most recently issued checkpoint.
    pub async fn latest_audit_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        let row = sqlx::query(
            "SELECT size, note, created_at FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }
}

fn checkpoint_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<CheckpointRow, StoreError> {
    Ok(CheckpointRow {
        size: to_u64("audit_checkpoints.size", r.try_get("size")?)?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Applies the entry's state change and inserts its leaves from `first`.
/// `Ok(Err(_))` is a refusal of this entry alone (e.g. an oversized leaf).
async fn write_entry(
    conn: &mut SqliteConnection,
    first: u64,
    entry: &Entry,
) -> Result<Result<(Vec<Hash>, u64), EntryError>, StoreError> {
    let applied = match &entry.change {
        StateChange::Nothing => Ok(0),
        StateChange::Nonce {
            nonce,
            host_id,
            expires_at,
        } => {
            SqliteStore::insert_nonce_in(conn, nonce, host_id, *expires_at).await?;
            Ok(0)
        }
        StateChange::Host(h) => {
            SqliteStore::upsert_host_in(conn, h).await?;
            Ok(0)
        }
        StateChange::Appraisal(c) => super::appraisal::apply_in(conn, c).await?,
        StateChange::RevokeHost {
            host_id,
            reason,
            at,
        } => governance::revoke_host_in(conn, host_id, reason, *at).await?,
        StateChange::ReinstateHost { host_id, at } => {
            governance::reinstate_host_in(conn, host_id, *at).await?
        }
        StateChange::MarkStale {
            host_id,
            cutoff,
            at,
        } => governance::mark_stale_in(conn, host_id, *cutoff, *at).await?,
        StateChange::RevokeToken { cti, reason, at } => {
            governance::revoke_token_in(conn, cti, reason, *at).await?
        }
        StateChange::RevokeWorkload {
            workload,
            reason,
            at,
        } => Ok(governance::revoke_workload_in(conn, workload, reason, *at).await?),
        StateChange::RequestKey { key, nonce } => {
            match super::appraisal::consume_nonce_in(conn, nonce).await? {
                Err(p) => Err(ChangeRefused::Nonce(p)),
                Ok(()) => request_key::upsert_request_key_in(conn, key).await?,
            }
        }
        StateChange::SignedToken {
            token,
            key_name,
            fresh_since,
            nonce,
        } => match super::appraisal::consume_nonce_in(conn, nonce).await? {
            Err(p) => Err(ChangeRefused::Nonce(p)),
            Ok(()) => {
                request_key::insert_signed_token_in(conn, token, key_name, *fresh_since).await?
            }
        },
        StateChange::DerivedToken {
            token,
            parent_cti,
            host_fresh_since,
        } => {
            governance::insert_derived_token_in(conn, token, parent_cti, *host_fresh_since).await?
        }
    };
    let tokens_revoked = match applied {
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
        sqlx::query(
            "INSERT INTO audit_leaves (idx, leaf, leaf_hash, time) VALUES ($1, $2, $3, $4)",
        )
        .bind(to_i64("idx", index)?)
        .bind(&bytes)
        .bind(&h[..])
        .bind(leaf.time)
        .execute(&mut *conn)
        .await?;
        hashes.push(h);
        index = index.saturating_add(1);
    }
    Ok(Ok((hashes, tokens_revoked)))
}
