//! SQLite side of the audit log: batched appends in one write transaction
//! (group commit, one savepoint per entry), leaf and checkpoint reads.

use sqlx::{Acquire as _, Row, SqlitePool};
use verifier_lib::audit::Hash;

use super::SqliteTx;
use crate::store::apply::write_entry;
use crate::store::audit::{
    to_i64, to_u64, Appended, AuditKeyRecord, CheckpointError, CheckpointRow, EntryError, LeafRow,
    PrepareEntry, SignCheckpoint,
};
use crate::store::StoreError;

/// Appends a batch of entries in ONE transaction (group commit); each
/// entry is applied by [`write_entry`] inside its own savepoint, so a
/// refused entry rolls back alone. The outer error means nothing was
/// committed; otherwise each entry has its own outcome, in order.
pub(super) async fn append_batch(
    pool: &SqlitePool,
    batch: Vec<PrepareEntry>,
) -> Result<Vec<Result<Appended, EntryError>>, StoreError> {
    // IMMEDIATE: take the write lock first, so the next index read below
    // cannot go stale before this transaction commits.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
        let mut sp = SqliteTx((&mut *tx).begin().await?);
        match write_entry(&mut sp, next, &entry).await {
            Ok(Ok((hashes, tokens_revoked))) => {
                sp.0.commit().await?;
                let first_index = next;
                next = next.saturating_add(u64::try_from(hashes.len()).unwrap_or(u64::MAX));
                out.push(Ok(Appended {
                    first_index,
                    leaf_hashes: hashes,
                    tokens_revoked,
                }));
            }
            Ok(Err(e)) => {
                sp.0.rollback().await?;
                out.push(Err(e));
            }
            Err(e) => {
                sp.0.rollback().await?;
                out.push(Err(EntryError::Store(e)));
            }
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// Leaf hashes with index `>= from`, in index order, at most `limit`.
pub(super) async fn leaf_hashes(
    pool: &SqlitePool,
    from: u64,
    limit: u32,
) -> Result<Vec<(u64, Hash)>, StoreError> {
    let rows = sqlx::query(
        "SELECT idx, leaf_hash FROM audit_leaves WHERE idx >= $1 ORDER BY idx LIMIT $2",
    )
    .bind(to_i64("from", from)?)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(hash_row).collect()
}

fn hash_row(r: &sqlx::sqlite::SqliteRow) -> Result<(u64, Hash), StoreError> {
    let idx = to_u64("audit_leaves.idx", r.try_get("idx")?)?;
    let h: Vec<u8> = r.try_get("leaf_hash")?;
    let h: Hash = h.try_into().map_err(|v: Vec<u8>| StoreError::Corrupt {
        what: "audit_leaves.leaf_hash",
        value: hex::encode(v),
    })?;
    Ok((idx, h))
}

/// Leaf rows with `start <= index < end`, in index order.
pub(super) async fn leaves(
    pool: &SqlitePool,
    start: u64,
    end: u64,
) -> Result<Vec<LeafRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT idx, leaf, leaf_hash, time FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx",
    )
    .bind(to_i64("start", start)?)
    .bind(to_i64("end", end)?)
    .fetch_all(pool)
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

pub(super) async fn insert_checkpoint(
    pool: &SqlitePool,
    cp: &CheckpointRow,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_CHECKPOINT)
        .bind(to_i64("size", cp.size)?)
        .bind(&cp.note)
        .bind(cp.created_at)
        .bind(&cp.key_id)
        .execute(pool)
        .await?;
    Ok(())
}

const INSERT_CHECKPOINT: &str =
    "INSERT INTO audit_checkpoints (size, note, created_at, key_id) VALUES ($1, $2, $3, $4)";

/// Checkpoints with size `>= from_size`, in issue order.
pub(super) async fn checkpoints(
    pool: &SqlitePool,
    from_size: u64,
    limit: u64,
) -> Result<Vec<CheckpointRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT size, note, created_at, key_id FROM audit_checkpoints WHERE size >= $1 ORDER BY id LIMIT $2",
    )
    .bind(to_i64("from_size", from_size)?)
    // Beyond i64::MAX is "all of them".
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(checkpoint_from_row).collect()
}

/// The most recently issued checkpoint.
pub(super) async fn latest_checkpoint(
    pool: &SqlitePool,
) -> Result<Option<CheckpointRow>, StoreError> {
    let row = sqlx::query(
        "SELECT size, note, created_at, key_id FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(checkpoint_from_row).transpose()
}

fn checkpoint_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<CheckpointRow, StoreError> {
    let note: String = r.try_get("note")?;
    Ok(CheckpointRow {
        size: to_u64("audit_checkpoints.size", r.try_get("size")?)?,
        key_id: CheckpointRow::key_id_or_from_note(r.try_get("key_id")?, &note),
        note,
        created_at: r.try_get("created_at")?,
    })
}

/// The newest checkpoint signed by `key_id` (or stored before checkpoints
/// named their key: the caller checks the id read from its note).
pub(super) async fn latest_checkpoint_of(
    pool: &SqlitePool,
    key_id: &str,
) -> Result<Option<CheckpointRow>, StoreError> {
    let row = sqlx::query(
        "SELECT size, note, created_at, key_id FROM audit_checkpoints \
         WHERE key_id = $1 OR key_id IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(checkpoint_from_row).transpose()
}

/// Signs a checkpoint under the log's write lock: reads the leaf hashes
/// committed from index `from` on, lets `sign` bring its tree to the
/// database's size and sign it, and stores the checkpoint in the same
/// transaction. No append can commit in between, so the signed size and
/// root are those of the stored rows `0..size`, and checkpoints are stored
/// in the order of their sizes whichever broker signs them.
pub(super) async fn sign_checkpoint(
    pool: &SqlitePool,
    from: u64,
    sign: SignCheckpoint,
) -> Result<Option<CheckpointRow>, CheckpointError> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StoreError::from)?;
    let rows = sqlx::query("SELECT idx, leaf_hash FROM audit_leaves WHERE idx >= $1 ORDER BY idx")
        .bind(to_i64("from", from)?)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    let mut hashes = Vec::with_capacity(rows.len());
    for r in &rows {
        hashes.push(hash_row(r)?);
    }
    let Some(cp) = sign(hashes)? else {
        return Ok(None);
    };
    sqlx::query(INSERT_CHECKPOINT)
        .bind(to_i64("size", cp.size)?)
        .bind(&cp.note)
        .bind(cp.created_at)
        .bind(&cp.key_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Some(cp))
}

/// Publishes a checkpoint verifier key (kept as first published when its id
/// is already there).
pub(super) async fn register_key(
    pool: &SqlitePool,
    key: &AuditKeyRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_keys (key_id, vkey, broker, added_at, retired_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(&key.key_id)
    .bind(&key.vkey)
    .bind(&key.broker)
    .bind(key.added_at)
    .bind(key.retired_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every published checkpoint verifier key, oldest first.
pub(super) async fn keys(pool: &SqlitePool) -> Result<Vec<AuditKeyRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT key_id, vkey, broker, added_at, retired_at FROM audit_keys ORDER BY added_at, key_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditKeyRecord {
                key_id: r.try_get("key_id")?,
                vkey: r.try_get("vkey")?,
                broker: r.try_get("broker")?,
                added_at: r.try_get("added_at")?,
                retired_at: r.try_get("retired_at")?,
            })
        })
        .collect()
}
