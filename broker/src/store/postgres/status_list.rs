//! Status-list slots and epochs on PostgreSQL (`store::status_list` has the SQL
//! shared with PostgreSQL). The allocator row is locked by its `UPDATE` until commit, so brokers take slots one at a time.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::store::status_list::{
    to_i64, ALLOCATE_SQL, CURRENT_EPOCH_SQL, EPOCH_SQL, FIRST_EPOCH_SQL, LIVE_EPOCHS_SQL,
    RECORD_EPOCH_SQL,
};
use crate::store::{EpochPlan, EpochStatuses, StatusEpoch, StatusSlot, StoreError};

use super::rows::int;

fn epoch_row(r: &PgRow) -> Result<StatusEpoch, StoreError> {
    Ok(StatusEpoch {
        epoch: int("status_epochs.epoch", r.try_get("epoch")?)?,
        capacity: int("status_epochs.capacity", r.try_get("capacity")?)?,
        started_at: r.try_get("started_at")?,
    })
}

pub(super) async fn allocate(
    pool: &PgPool,
    plan: EpochPlan,
    now: i64,
) -> Result<StatusSlot, StoreError> {
    let capacity = to_i64("status.list_capacity", plan.capacity.max(1))?;
    let mut tx = pool.begin().await?;
    let r = sqlx::query(ALLOCATE_SQL)
        .bind(capacity)
        .bind(plan.period_secs.max(0))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    let e = epoch_row(&r)?;
    let idx = int("status_allocator.next_idx", r.try_get("idx")?)?;
    sqlx::query(RECORD_EPOCH_SQL)
        .bind(to_i64("epoch", e.epoch)?)
        .bind(to_i64("capacity", e.capacity)?)
        .bind(e.started_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusSlot {
        epoch: e.epoch,
        idx,
    })
}

pub(super) async fn live_epochs(
    pool: &PgPool,
    plan: EpochPlan,
    cutoff: i64,
    now: i64,
) -> Result<(u64, Vec<StatusEpoch>), StoreError> {
    let capacity = to_i64("status.list_capacity", plan.capacity.max(1))?;
    let mut tx = pool.begin().await?;
    sqlx::query(FIRST_EPOCH_SQL)
        .bind(capacity)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let current = epoch_row(&sqlx::query(CURRENT_EPOCH_SQL).fetch_one(&mut *tx).await?)?;
    sqlx::query(RECORD_EPOCH_SQL)
        .bind(to_i64("epoch", current.epoch)?)
        .bind(to_i64("capacity", current.capacity)?)
        .bind(current.started_at)
        .execute(&mut *tx)
        .await?;
    let live = sqlx::query(LIVE_EPOCHS_SQL)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(epoch_row)
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok((current.epoch, live))
}

pub(super) async fn epoch_statuses(
    pool: &PgPool,
    epoch: u64,
) -> Result<Option<EpochStatuses>, StoreError> {
    let e = to_i64("epoch", epoch)?;
    let mut tx = pool.begin().await?;
    let version = super::rows::status_version(&mut tx).await?;
    let Some(row) = sqlx::query(EPOCH_SQL)
        .bind(e)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let epoch = epoch_row(&row)?;
    let revoked = sqlx::query(
        "SELECT status_idx FROM tokens WHERE status_epoch = $1 AND revoked ORDER BY status_idx",
    )
    .bind(e)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| int("tokens.status_idx", r.try_get("status_idx")?))
    .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(Some(EpochStatuses {
        version,
        epoch,
        revoked,
    }))
}

/// The channel a committed revocation notifies (`write_tx::bump_status_version`).
pub(super) const STATUS_CHANNEL: &str = "writ_status";

/// `LISTEN writ_status` on a connection of its own; `on_change` runs for
/// every notification, and after every reconnection (a notification may
/// have been missed while the connection was down).
pub(super) fn spawn_listener(pool: PgPool, on_change: std::sync::Arc<dyn Fn() + Send + Sync>) {
    tokio::spawn(async move {
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(STATUS_CHANNEL).await {
                        tracing::warn!(error = %e, "status LISTEN failed");
                    } else {
                        backoff = std::time::Duration::from_millis(100);
                        on_change();
                        loop {
                            match listener.recv().await {
                                Ok(_) => on_change(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "status LISTEN connection lost");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "status LISTEN connection failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
    });
}
