//! The write primitives on SQLite, inside a transaction or savepoint.

use std::ops::DerefMut;

use async_trait::async_trait;
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use verifier_lib::host_clock::ClockState;

use super::rows::{self, clock_to_db};
use crate::store::audit::to_i64;
use crate::store::{
    AppraisalRecord, HostRecord, HostStatus, ImaCursorRecord, RequestKeyRecord, SnpHostRecord,
    StoreError, TokenRecord, TokenRoot, TokenState, WriteTransaction, WriteTx,
};

/// A write transaction (`Transaction`) or a savepoint inside one
/// (`&mut SqliteConnection`).
pub(super) struct SqliteTx<C>(pub(super) C);

#[async_trait]
impl WriteTransaction for SqliteTx<Transaction<'static, Sqlite>> {
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.0.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl<C> WriteTx for SqliteTx<C>
where
    C: DerefMut<Target = SqliteConnection> + Send,
{
    async fn host(&mut self, id: &str) -> Result<Option<HostRecord>, StoreError> {
        rows::host(&mut self.0, id).await
    }

    async fn put_host(&mut self, h: &HostRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hosts (id, status, ek_public, ek_cert_digest, ak_public, ak_name, enrolled_at, last_attested_at, last_failure, policy_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, ek_public = excluded.ek_public,
               ek_cert_digest = excluded.ek_cert_digest, ak_public = excluded.ak_public, ak_name = excluded.ak_name,
               enrolled_at = excluded.enrolled_at, last_attested_at = excluded.last_attested_at,
               last_failure = excluded.last_failure, policy_id = excluded.policy_id",
        )
        .bind(&h.id)
        .bind(h.status.as_str())
        .bind(&h.ek_public)
        .bind(&h.ek_cert_digest)
        .bind(&h.ak_public)
        .bind(&h.ak_name)
        .bind(h.enrolled_at)
        .bind(h.last_attested_at)
        .bind(&h.last_failure)
        .bind(&h.policy_id)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn set_host_status(
        &mut self,
        id: &str,
        status: HostStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE hosts SET status = $2, status_reason = $3 WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .bind(reason)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn host_clock(&mut self, id: &str) -> Result<Option<ClockState>, StoreError> {
        rows::host_clock(&mut self.0, id).await
    }

    async fn set_host_clock(
        &mut self,
        id: &str,
        clock: Option<ClockState>,
    ) -> Result<(), StoreError> {
        set_host_clock(&mut self.0, id, clock).await
    }

    async fn insert_host_event(
        &mut self,
        host_id: &str,
        at: i64,
        kind: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO host_events (host_id, at, kind, detail) VALUES ($1, $2, $3, $4)")
            .bind(host_id)
            .bind(at)
            .bind(kind)
            .bind(detail)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn revoked_identity(&mut self, names: &[String]) -> Result<Option<String>, StoreError> {
        rows::revoked_identity(&mut self.0, names).await
    }

    async fn insert_revoked_identities(
        &mut self,
        names: &[String],
        host_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        rows::insert_revoked_identities(&mut self.0, names, host_id, at).await?;
        Ok(())
    }

    async fn delete_revoked_identities(&mut self, host_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM revoked_identities WHERE host_id = $1")
            .bind(host_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_snp_host_if_absent(&mut self, h: &SnpHostRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snp_hosts (host_id, chip_id, measurement, host_data, product, signer, registered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (host_id) DO NOTHING",
        )
        .bind(&h.host_id)
        .bind(&h.chip_id)
        .bind(&h.measurement)
        .bind(&h.host_data)
        .bind(&h.product)
        .bind(&h.signer)
        .bind(h.registered_at)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_used_nonce(
        &mut self,
        digest: &[u8],
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO used_nonces (digest, expires_at) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(expires_at)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_appraisal(&mut self, a: &AppraisalRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO appraisals (host_id, at, verdict, policy_id, policy_hash, evidence_digest, failures)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.host_id)
        .bind(a.at)
        .bind(&a.verdict)
        .bind(&a.policy_id)
        .bind(&a.policy_hash)
        .bind(&a.evidence_digest)
        .bind(&a.failures)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_token(
        &mut self,
        t: &TokenRecord,
        parent_cti: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let (slot_epoch, slot_idx) = match t.status {
            Some(s) => (
                Some(crate::store::status_list::to_i64(
                    "tokens.status_epoch",
                    s.epoch,
                )?),
                Some(crate::store::status_list::to_i64(
                    "tokens.status_idx",
                    s.idx,
                )?),
            ),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO tokens (cti, host_id, workload, workload_digest, iat, exp, policy_id, token_digest, parent_cti, status_epoch, status_idx, audit_index)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&t.cti)
        .bind(&t.host_id)
        .bind(&t.workload)
        .bind(&t.workload_digest)
        .bind(t.iat)
        .bind(t.exp)
        .bind(&t.policy_id)
        .bind(&t.token_digest)
        .bind(parent_cti)
        .bind(slot_epoch)
        .bind(slot_idx)
        .bind(
            t.audit_index
                .map(|i| crate::store::status_list::to_i64("tokens.audit_index", i))
                .transpose()?,
        )
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn token_state(&mut self, cti: &[u8]) -> Result<Option<TokenState>, StoreError> {
        rows::token(&mut self.0, cti).await
    }

    async fn token_subtree(&mut self, root: TokenRoot<'_>) -> Result<Vec<Vec<u8>>, StoreError> {
        let column = match root {
            TokenRoot::Host(_) => "host_id",
            TokenRoot::Token(_) => "cti",
            TokenRoot::Workload(_) => "workload",
        };
        let sql = format!(
            "WITH RECURSIVE tree(cti) AS (
                SELECT cti FROM tokens WHERE {column} = $1
                UNION SELECT t.cti FROM tokens t JOIN tree ON t.parent_cti = tree.cti)
             SELECT cti FROM tree"
        );
        let q = sqlx::query(&sql);
        let q = match root {
            TokenRoot::Host(h) => q.bind(h.to_owned()),
            TokenRoot::Token(c) => q.bind(c.to_vec()),
            TokenRoot::Workload(w) => q.bind(w.to_owned()),
        };
        q.fetch_all(&mut *self.0)
            .await?
            .iter()
            .map(|r| r.try_get("cti").map_err(StoreError::from))
            .collect()
    }

    async fn revoke_ctis(
        &mut self,
        ctis: &[Vec<u8>],
        reason: &str,
        at: i64,
    ) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for cti in ctis {
            n = n.saturating_add(
                sqlx::query(
                    "UPDATE tokens SET revoked = 1, revoked_at = $2, revocation_reason = $3
                     WHERE cti = $1 AND revoked = 0",
                )
                .bind(cti)
                .bind(at)
                .bind(reason)
                .execute(&mut *self.0)
                .await?
                .rows_affected(),
            );
        }
        Ok(n)
    }

    async fn bump_status_version(&mut self) -> Result<(), StoreError> {
        sqlx::query("UPDATE status_list_state SET version = version + 1 WHERE id = 1")
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn request_key(&mut self, host_id: &str) -> Result<Option<RequestKeyRecord>, StoreError> {
        rows::request_key(&mut self.0, host_id).await
    }

    async fn put_request_key(&mut self, k: &RequestKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO request_keys (host_id, key_name, key_public, reset_count, restart_count, certified_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (host_id) DO UPDATE SET key_name = excluded.key_name, key_public = excluded.key_public,
               reset_count = excluded.reset_count, restart_count = excluded.restart_count,
               certified_at = excluded.certified_at",
        )
        .bind(&k.host_id)
        .bind(&k.key_name)
        .bind(&k.key_public)
        .bind(i64::from(k.reset_count))
        .bind(i64::from(k.restart_count))
        .bind(k.certified_at)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn delete_request_key(&mut self, host_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM request_keys WHERE host_id = $1")
            .bind(host_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn put_ima_cursor(&mut self, rec: &ImaCursorRecord) -> Result<(), StoreError> {
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
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn policy_pointer(
        &mut self,
        slot: crate::store::PolicySlot,
    ) -> Result<Option<i64>, StoreError> {
        super::policy::pointer(&mut self.0, slot).await
    }

    async fn record_policy_activation(
        &mut self,
        version_id: i64,
        previous: Option<i64>,
        at: i64,
    ) -> Result<(), StoreError> {
        super::policy::record_activation(&mut self.0, version_id, previous, at).await
    }

    async fn insert_audit_leaf(
        &mut self,
        index: u64,
        leaf: &[u8],
        leaf_hash: &[u8],
        time: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_leaves (idx, leaf, leaf_hash, time) VALUES ($1, $2, $3, $4)",
        )
        .bind(to_i64("idx", index)?)
        .bind(leaf)
        .bind(leaf_hash)
        .bind(time)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }
}

/// Overwrite (or clear) a host's clock baseline.
pub(super) async fn set_host_clock(
    conn: &mut SqliteConnection,
    host_id: &str,
    clock: Option<ClockState>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE hosts SET tpm_reset_count = $2, tpm_restart_count = $3, tpm_clock = $4 WHERE id = $1",
    )
    .bind(host_id)
    .bind(clock.map(|c| i64::from(c.reset_count)))
    .bind(clock.map(|c| i64::from(c.restart_count)))
    .bind(clock.map(|c| clock_to_db(c.clock)))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
