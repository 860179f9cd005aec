//! SQLite reads, on one connection (the pool's or a write transaction's),
//! and the mapping of rows to records.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use verifier_lib::appraisal::ImaState;
use verifier_lib::host_clock::ClockState;
use verifier_lib::ima::ImaCursor;

use crate::store::governance::{status_kinds_sql, MAX_HOST_EVENTS};
use crate::store::{
    HostEvent, HostEvents, HostRecord, ImaCursorRecord, RequestKeyRecord, SnpHostRecord,
    StoreError, TokenRecord, TokenState,
};

pub(super) fn int<T: TryFrom<i64>>(what: &'static str, v: i64) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}

/// A TPM clock as stored (SQLite integers are signed).
pub(super) fn clock_to_db(c: u64) -> i64 {
    i64::try_from(c).unwrap_or(i64::MAX)
}

pub(super) async fn host(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<HostRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM hosts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| host_from_row(&r)).transpose()
}

pub(super) async fn hosts(conn: &mut SqliteConnection) -> Result<Vec<HostRecord>, StoreError> {
    let rows = sqlx::query("SELECT * FROM hosts ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(host_from_row).collect()
}

fn host_from_row(r: &SqliteRow) -> Result<HostRecord, StoreError> {
    Ok(HostRecord {
        id: r.try_get("id")?,
        status: crate::store::parse_status(&r.try_get::<String, _>("status")?)?,
        ek_public: r.try_get("ek_public")?,
        ek_cert_digest: r.try_get("ek_cert_digest")?,
        ak_public: r.try_get("ak_public")?,
        ak_name: r.try_get("ak_name")?,
        enrolled_at: r.try_get("enrolled_at")?,
        last_attested_at: r.try_get("last_attested_at")?,
        last_failure: r.try_get("last_failure")?,
        policy_id: r.try_get("policy_id")?,
    })
}

pub(super) async fn host_clock(
    conn: &mut SqliteConnection,
    host_id: &str,
) -> Result<Option<ClockState>, StoreError> {
    let row = sqlx::query(
        "SELECT tpm_reset_count, tpm_restart_count, tpm_clock FROM hosts WHERE id = $1",
    )
    .bind(host_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let reset: Option<i64> = r.try_get("tpm_reset_count")?;
    let restart: Option<i64> = r.try_get("tpm_restart_count")?;
    let clock: Option<i64> = r.try_get("tpm_clock")?;
    Ok(match (reset, restart, clock) {
        (Some(a), Some(b), Some(c)) => Some(ClockState {
            reset_count: int("hosts.tpm_reset_count", a)?,
            restart_count: int("hosts.tpm_restart_count", b)?,
            clock: int("hosts.tpm_clock", c)?,
        }),
        _ => None,
    })
}

pub(super) async fn token(
    conn: &mut SqliteConnection,
    cti: &[u8],
) -> Result<Option<TokenState>, StoreError> {
    let row = sqlx::query("SELECT * FROM tokens WHERE cti = $1")
        .bind(cti)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| token_row(&r)).transpose()
}

pub(super) fn token_row(r: &SqliteRow) -> Result<TokenState, StoreError> {
    let audit_index: Option<i64> = r.try_get("audit_index")?;
    Ok(TokenState {
        record: TokenRecord {
            cti: r.try_get("cti")?,
            host_id: r.try_get("host_id")?,
            workload: r.try_get("workload")?,
            workload_digest: r.try_get("workload_digest")?,
            iat: r.try_get("iat")?,
            exp: r.try_get("exp")?,
            policy_id: r.try_get("policy_id")?,
            token_digest: r.try_get("token_digest")?,
            status: status_slot(r.try_get("status_epoch")?, r.try_get("status_idx")?)?,
            audit_index: audit_index
                .map(|i| int("tokens.audit_index", i))
                .transpose()?,
        },
        parent_cti: r.try_get("parent_cti")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
    })
}

pub(super) async fn status_version(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let v: i64 = sqlx::query("SELECT version FROM status_list_state WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?
        .try_get("version")?;
    int("status_list_state.version", v)
}

pub(super) async fn host_events(
    conn: &mut SqliteConnection,
    host_id: &str,
    which: HostEvents,
    limit: u32,
) -> Result<Vec<HostEvent>, StoreError> {
    let sql = format!(
        "SELECT at, kind, detail FROM host_events
         WHERE host_id = $1 AND ($2 = 0 OR kind IN ({}))
         ORDER BY id DESC LIMIT $3",
        status_kinds_sql()
    );
    let rows = sqlx::query(&sql)
        .bind(host_id)
        .bind(which.status_only())
        .bind(i64::from(limit.clamp(1, MAX_HOST_EVENTS)))
        .fetch_all(&mut *conn)
        .await?;
    let mut events = rows
        .iter()
        .map(|r| {
            Ok(HostEvent {
                at: r.try_get("at")?,
                kind: r.try_get("kind")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    events.reverse();
    Ok(events)
}

pub(super) async fn request_key(
    conn: &mut SqliteConnection,
    host_id: &str,
) -> Result<Option<RequestKeyRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM request_keys WHERE host_id = $1")
        .bind(host_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        Ok(RequestKeyRecord {
            host_id: r.try_get("host_id")?,
            key_name: r.try_get("key_name")?,
            key_public: r.try_get("key_public")?,
            reset_count: int("request_keys.reset_count", r.try_get("reset_count")?)?,
            restart_count: int("request_keys.restart_count", r.try_get("restart_count")?)?,
            certified_at: r.try_get("certified_at")?,
        })
    })
    .transpose()
}

pub(super) async fn snp_host(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<SnpHostRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT s.*, h.ek_cert_digest FROM snp_hosts s JOIN hosts h ON h.id = s.host_id WHERE s.host_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(SnpHostRecord {
            host_id: r.try_get("host_id")?,
            chip_id: r.try_get("chip_id")?,
            measurement: r.try_get("measurement")?,
            host_data: r.try_get("host_data")?,
            product: r.try_get("product")?,
            signer: r.try_get("signer")?,
            signer_cert_digest: r.try_get("ek_cert_digest")?,
            registered_at: r.try_get("registered_at")?,
        })
    })
    .transpose()
}

pub(super) async fn ima_cursor(
    conn: &mut SqliteConnection,
    host_id: &str,
) -> Result<Option<ImaCursorRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM ima_cursors WHERE host_id = $1")
        .bind(host_id)
        .fetch_optional(&mut *conn)
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

/// The host under whose revocation one of `names` is recorded.
pub(super) async fn revoked_identity(
    conn: &mut SqliteConnection,
    names: &[String],
) -> Result<Option<String>, StoreError> {
    for name in names {
        let host: Option<String> =
            sqlx::query_scalar("SELECT host_id FROM revoked_identities WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
        if host.is_some() {
            return Ok(host);
        }
    }
    Ok(None)
}

/// Record `names` as revoked with `host_id`; returns how many were new.
pub(super) async fn insert_revoked_identities(
    conn: &mut SqliteConnection,
    names: &[String],
    host_id: &str,
    at: i64,
) -> Result<u64, StoreError> {
    let mut added = 0;
    for name in names {
        added += sqlx::query(
            "INSERT INTO revoked_identities (name, host_id, revoked_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(host_id)
        .bind(at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(added)
}

/// A token's stored status-list slot (both columns, or neither).
fn status_slot(
    epoch: Option<i64>,
    idx: Option<i64>,
) -> Result<Option<crate::store::StatusSlot>, StoreError> {
    match (epoch, idx) {
        (Some(e), Some(i)) => Ok(Some(crate::store::StatusSlot {
            epoch: int("tokens.status_epoch", e)?,
            idx: int("tokens.status_idx", i)?,
        })),
        _ => Ok(None),
    }
}
