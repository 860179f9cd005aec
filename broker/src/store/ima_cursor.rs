//! Per-host IMA cursors (migration 0003): where the last affirming IMA
//! appraisal stopped, so the next one parses only the new entries.

use sqlx::Row;
use verifier_lib::appraisal::ImaState;
use verifier_lib::ima::ImaCursor;

use super::{Store, StoreError};

/// A stored IMA cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaCursorRecord {
    pub host_id: String,
    pub state: ImaState,
    /// Hash of the policy the entries were appraised under; a cursor from
    /// another policy is not continued (the list is appraised again from 0).
    pub policy_hash: String,
    pub updated_at: i64,
}

fn int<T: TryFrom<i64>>(what: &'static str, v: i64) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}

impl Store {
    /// The host's IMA cursor, if an IMA appraisal was ever accepted.
    pub async fn ima_cursor(&self, host_id: &str) -> Result<Option<ImaCursorRecord>, StoreError> {
        let Store::Sqlite(s) = self;
        let row = sqlx::query("SELECT * FROM ima_cursors WHERE host_id = $1")
            .bind(host_id)
            .fetch_optional(s.pool())
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(ImaCursorRecord {
            host_id: r.try_get("host_id")?,
            state: ImaState {
                cursor: ImaCursor {
                    entries: int("ima_cursors.entries", r.try_get("entries")?)?,
                    pcr10_sha1: r.try_get("pcr10_sha1")?,
                    pcr10_sha256: r.try_get("pcr10_sha256")?,
                },
                reset_count: int("ima_cursors.reset_count", r.try_get("reset_count")?)?,
                restart_count: int("ima_cursors.restart_count", r.try_get("restart_count")?)?,
            },
            policy_hash: r.try_get("policy_hash")?,
            updated_at: r.try_get("updated_at")?,
        }))
    }

    /// Store the cursor of an affirming appraisal (replacing the previous
    /// one). Decisions store it with their appraisal instead
    /// (`StateChange::Appraisal::ima_cursor`), in one transaction.
    pub async fn save_ima_cursor(&self, rec: &ImaCursorRecord) -> Result<(), StoreError> {
        let Store::Sqlite(s) = self;
        let mut conn = s.pool().acquire().await?;
        super::sqlite::SqliteStore::save_ima_cursor_in(&mut conn, rec).await
    }
}

impl super::sqlite::SqliteStore {
    /// [`Store::save_ima_cursor`] inside the caller's transaction.
    pub(super) async fn save_ima_cursor_in(
        conn: &mut sqlx::SqliteConnection,
        rec: &ImaCursorRecord,
    ) -> Result<(), StoreError> {
        let entries = i64::try_from(rec.state.cursor.entries).map_err(|_| StoreError::Corrupt {
            what: "ima cursor entries",
            value: rec.state.cursor.entries.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO ima_cursors (host_id, entries, pcr10_sha1, pcr10_sha256, reset_count, restart_count, policy_hash, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (host_id) DO UPDATE SET entries = excluded.entries, pcr10_sha1 = excluded.pcr10_sha1,
               pcr10_sha256 = excluded.pcr10_sha256, reset_count = excluded.reset_count,
               restart_count = excluded.restart_count, policy_hash = excluded.policy_hash,
               updated_at = excluded.updated_at",
        )
        .bind(&rec.host_id)
        .bind(entries)
        .bind(&rec.state.cursor.pcr10_sha1)
        .bind(&rec.state.cursor.pcr10_sha256)
        .bind(i64::from(rec.state.reset_count))
        .bind(i64::from(rec.state.restart_count))
        .bind(&rec.policy_hash)
        .bind(rec.updated_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cursor_roundtrip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.ima_cursor("h").await.unwrap(), None);
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
        store.save_ima_cursor(&rec).await.unwrap();
        assert_eq!(store.ima_cursor("h").await.unwrap(), Some(rec.clone()));
        rec.state.cursor.entries = 9;
        store.save_ima_cursor(&rec).await.unwrap();
        assert_eq!(store.ima_cursor("h").await.unwrap(), Some(rec));
    }
}
