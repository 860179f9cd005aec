//! SQLite side of an appraisal decision (`StateChange::Appraisal`): the
//! nonce is consumed and the preconditions re-checked in the same
//! transaction that records the appraisal, the host's status, clock
//! baseline and IMA cursor, the SEV-SNP registration and the token.

use sqlx::{Row, SqliteConnection};
use verifier_lib::host_clock::ClockTransition;

use super::governance::{clock_from_row, clock_to_db, event};
use super::SqliteStore;
use crate::store::audit::{AppraisalChange, ChangeRefused, NonceUse};
use crate::store::{HostStatus, NonceProblem, StoreError};

/// Mark a nonce used, once, if it was issued to the host and is unexpired.
pub(super) async fn consume_nonce_in(
    conn: &mut SqliteConnection,
    n: &NonceUse,
) -> Result<Result<(), NonceProblem>, StoreError> {
    let done = sqlx::query(
        "UPDATE nonces SET used = 1 WHERE nonce = $1 AND host_id = $2 AND used = 0 AND expires_at > $3",
    )
    .bind(&n.nonce)
    .bind(&n.host_id)
    .bind(n.at)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(Ok(()));
    }
    let row = sqlx::query("SELECT host_id, expires_at, used FROM nonces WHERE nonce = $1")
        .bind(&n.nonce)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(Err(match row {
        None => NonceProblem::Unknown,
        Some(r) if r.try_get::<String, _>("host_id")? != n.host_id => {
            NonceProblem::IssuedToAnotherHost
        }
        Some(r) if r.try_get::<i64, _>("used")? != 0 => NonceProblem::AlreadyUsed,
        Some(_) => NonceProblem::Expired,
    }))
}

pub(super) async fn apply_in(
    conn: &mut SqliteConnection,
    c: &AppraisalChange,
) -> Result<Result<u64, ChangeRefused>, StoreError> {
    if let Err(p) = consume_nonce_in(conn, &c.nonce).await? {
        return Ok(Err(ChangeRefused::Nonce(p)));
    }
    let host_id = &c.appraisal.host_id;
    let row = sqlx::query(
        "SELECT status, tpm_reset_count, tpm_restart_count, tpm_clock FROM hosts WHERE id = $1",
    )
    .bind(host_id)
    .fetch_optional(&mut *conn)
    .await?;
    let current = match &row {
        Some(r) => {
            let s: String = r.try_get("status")?;
            let status = HostStatus::from_name(&s).ok_or(StoreError::Corrupt {
                what: "hosts.status",
                value: s,
            })?;
            Some((status, clock_from_row(r)?))
        }
        None => None,
    };
    // The preconditions: the host is as the decision read it.
    let unchanged = match (&c.register, current) {
        (Some(_), Some(_)) => false,
        (_, None) => c.expect.status.is_none(),
        (None, Some((status, clock))) => {
            Some(status) == c.expect.status && (clock == c.expect.clock || c.clock.is_none())
        }
    };
    if !unchanged {
        return Ok(Err(ChangeRefused::Conflict));
    }
    if let Some(h) = &c.register {
        SqliteStore::register_snp_host_in(conn, h).await?;
    }
    let revoked = match c.status {
        Some(status) => {
            SqliteStore::record_appraisal_in(conn, &c.appraisal, status, c.token.as_ref()).await?
        }
        None => {
            SqliteStore::insert_appraisal_in(conn, &c.appraisal).await?;
            0
        }
    };
    if let Some(update) = &c.clock {
        let s = update.state;
        sqlx::query(
            "UPDATE hosts SET tpm_reset_count = $2, tpm_restart_count = $3, tpm_clock = $4 WHERE id = $1",
        )
        .bind(host_id)
        .bind(i64::from(s.reset_count))
        .bind(i64::from(s.restart_count))
        .bind(clock_to_db(s.clock))
        .execute(&mut *conn)
        .await?;
        if matches!(
            update.transition,
            ClockTransition::Rebooted | ClockTransition::Resumed
        ) {
            let previous = c.expect.clock;
            let detail = format!(
                "reset_count {} -> {}, restart_count {} -> {}",
                previous.map_or(0, |p| p.reset_count),
                s.reset_count,
                previous.map_or(0, |p| p.restart_count),
                s.restart_count,
            );
            event(
                conn,
                host_id,
                c.appraisal.at,
                update.transition.as_str(),
                &detail,
            )
            .await?;
        }
    }
    if let Some(reason) = &c.clock_refused {
        event(conn, host_id, c.appraisal.at, "clock_refused", reason).await?;
    }
    if let Some(cursor) = &c.ima_cursor {
        SqliteStore::save_ima_cursor_in(conn, cursor).await?;
    }
    Ok(Ok(revoked))
}
