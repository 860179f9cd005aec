//! Policy versions, pointers, activations and shadow differences on SQLite
//! (see `store::policy`).

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::store::policy::{
    NewPolicyVersion, PolicyActivation, PolicyPointers, PolicySlot, PolicyVersion, ShadowDifference,
};
use crate::store::StoreError;

fn version(r: &SqliteRow) -> Result<PolicyVersion, StoreError> {
    Ok(PolicyVersion {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        policy_id: r.try_get("policy_id")?,
        body: r.try_get("body")?,
        signer: r.try_get("signer")?,
        signature: r.try_get("signature")?,
        created_at: r.try_get("created_at")?,
        activated_at: r.try_get("activated_at")?,
    })
}

pub(super) async fn insert_version(
    c: &mut SqliteConnection,
    v: NewPolicyVersion<'_>,
) -> Result<PolicyVersion, StoreError> {
    sqlx::query(
        "INSERT INTO policy_versions (hash, policy_id, body, signer, signature, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (hash) DO UPDATE SET signer = excluded.signer, signature = excluded.signature
         WHERE policy_versions.signature IS NULL AND excluded.signature IS NOT NULL",
    )
    .bind(v.hash)
    .bind(v.policy_id)
    .bind(v.body)
    .bind(v.signer)
    .bind(v.signature)
    .bind(v.created_at)
    .execute(&mut *c)
    .await?;
    version_by_hash(c, v.hash)
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            what: "policy_versions.hash",
            value: v.hash.to_owned(),
        })
}

pub(super) async fn version_by_id(
    c: &mut SqliteConnection,
    id: i64,
) -> Result<Option<PolicyVersion>, StoreError> {
    sqlx::query("SELECT * FROM policy_versions WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(version)
        .transpose()
}

pub(super) async fn version_by_hash(
    c: &mut SqliteConnection,
    hash: &str,
) -> Result<Option<PolicyVersion>, StoreError> {
    sqlx::query("SELECT * FROM policy_versions WHERE hash = $1")
        .bind(hash)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(version)
        .transpose()
}

pub(super) async fn pointer(
    c: &mut SqliteConnection,
    slot: PolicySlot,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT version_id FROM policy_pointers WHERE slot = $1")
        .bind(slot.as_str())
        .fetch_optional(&mut *c)
        .await?;
    Ok(match row {
        Some(r) => r.try_get("version_id")?,
        None => None,
    })
}

pub(super) async fn pointers(c: &mut SqliteConnection) -> Result<PolicyPointers, StoreError> {
    Ok(PolicyPointers {
        active: pointer(c, PolicySlot::Active).await?,
        shadow: pointer(c, PolicySlot::Shadow).await?,
    })
}

pub(super) async fn set_pointer(
    c: &mut SqliteConnection,
    slot: PolicySlot,
    version_id: Option<i64>,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO policy_pointers (slot, version_id, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (slot) DO UPDATE SET version_id = excluded.version_id, updated_at = excluded.updated_at",
    )
    .bind(slot.as_str())
    .bind(version_id)
    .bind(at)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn record_activation(
    c: &mut SqliteConnection,
    version_id: i64,
    previous: Option<i64>,
    at: i64,
) -> Result<(), StoreError> {
    set_pointer(c, PolicySlot::Active, Some(version_id), at).await?;
    sqlx::query("UPDATE policy_versions SET activated_at = $1 WHERE id = $2")
        .bind(at)
        .bind(version_id)
        .execute(&mut *c)
        .await?;
    // Since when the version was the shadow candidate, if it was: its
    // recorded differences are the hosts this activation affects.
    sqlx::query(
        "INSERT INTO policy_activations (version_id, previous_version_id, at, shadowed_since)
         VALUES ($1, $2, $3, (SELECT updated_at FROM policy_pointers
                              WHERE slot = 'shadow' AND version_id = $1))",
    )
    .bind(version_id)
    .bind(previous)
    .bind(at)
    .execute(&mut *c)
    .await?;
    // A promoted candidate is no longer a candidate.
    sqlx::query(
        "UPDATE policy_pointers SET version_id = NULL, updated_at = $1
         WHERE slot = 'shadow' AND version_id = $2",
    )
    .bind(at)
    .bind(version_id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn history(
    c: &mut SqliteConnection,
    limit: u32,
) -> Result<Vec<PolicyActivation>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.seq, a.at, a.version_id, a.previous_version_id, a.shadowed_since, v.hash,
                v.policy_id, p.hash AS previous_hash
         FROM policy_activations a
         JOIN policy_versions v ON v.id = a.version_id
         LEFT JOIN policy_versions p ON p.id = a.previous_version_id
         ORDER BY a.seq DESC LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PolicyActivation {
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                version_id: r.try_get("version_id")?,
                hash: r.try_get("hash")?,
                policy_id: r.try_get("policy_id")?,
                previous_hash: r.try_get("previous_hash")?,
                previous_version_id: r.try_get("previous_version_id")?,
                shadowed_since: r.try_get("shadowed_since")?,
            })
        })
        .collect()
}

pub(super) async fn insert_difference(
    c: &mut SqliteConnection,
    d: &ShadowDifference,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO policy_shadow_differences (host_id, at, active_hash, shadow_hash, active_verdict,
           shadow_verdict, active_failures, shadow_failures)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&d.host_id)
    .bind(d.at)
    .bind(&d.active_hash)
    .bind(&d.shadow_hash)
    .bind(&d.active_verdict)
    .bind(&d.shadow_verdict)
    .bind(&d.active_failures)
    .bind(&d.shadow_failures)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn differences(
    c: &mut SqliteConnection,
    shadow_hash: &str,
    limit: u32,
) -> Result<Vec<ShadowDifference>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM policy_shadow_differences WHERE shadow_hash = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(shadow_hash)
    .bind(i64::from(limit))
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ShadowDifference {
                host_id: r.try_get("host_id")?,
                at: r.try_get("at")?,
                active_hash: r.try_get("active_hash")?,
                shadow_hash: r.try_get("shadow_hash")?,
                active_verdict: r.try_get("active_verdict")?,
                shadow_verdict: r.try_get("shadow_verdict")?,
                active_failures: r.try_get("active_failures")?,
                shadow_failures: r.try_get("shadow_failures")?,
            })
        })
        .collect()
}
