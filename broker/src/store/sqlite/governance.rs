//! SQLite side of the governance store operations (see `store::governance`).

//!
//! The state changes (revocations, reinstatement, staleness, derived
//! tokens) are `*_in` functions the audit writer runs inside the
//! transaction that also writes the decision's audit leaves
//! (`store::audit::StateChange`); they return the number of tokens revoked,
//! or why the change does not apply.

use sqlx::{Row, SqliteConnection};
use verifier_lib::host_clock::{check_progress, ClockState, ClockTransition, RebootEvidence};

use super::super::audit::ChangeRefused;
use super::super::governance::{stale_reason, ClockCheck, HostEvent, TokenState};
use super::super::{StoreError, TokenRecord};
use super::SqliteStore;

type Tx = SqliteConnection;

/// The outcome of a state change: tokens revoked, or why it did not apply.
pub(super) type Applied = Result<u64, ChangeRefused>;

/// Which tokens a revocation starts from (their descendants follow).
enum Root<'a> {
    Host(&'a str),
    Token(&'a [u8]),
    Workload(&'a str),
}

/// Mark the tokens selected by `root`, and every token derived from them,
/// revoked; bump the status-list version when anything changed.
async fn revoke_tree(
    tx: &mut Tx,
    root: Root<'_>,
    reason: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let column = match root {
        Root::Host(_) => "host_id",
        Root::Token(_) => "cti",
        Root::Workload(_) => "workload",
    };
    let sql = format!(
        "WITH RECURSIVE tree(cti) AS (
            SELECT cti FROM tokens WHERE {column} = $1
            UNION SELECT t.cti FROM tokens t JOIN tree ON t.parent_cti = tree.cti)
         UPDATE tokens SET revoked = 1, revoked_at = $2, revocation_reason = $3
         WHERE revoked = 0 AND cti IN (SELECT cti FROM tree)"
    );
    let q = sqlx::query(&sql);
    let q = match root {
        Root::Host(h) => q.bind(h.to_owned()),
        Root::Token(c) => q.bind(c.to_vec()),
        Root::Workload(w) => q.bind(w.to_owned()),
    };
    let n = q
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n > 0 {
        bump_version(tx).await?;
    }
    Ok(n)
}

async fn bump_version(tx: &mut Tx) -> Result<(), StoreError> {
    sqlx::query("UPDATE status_list_state SET version = version + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn version(tx: &mut Tx) -> Result<u64, StoreError> {
    let v: i64 = sqlx::query("SELECT version FROM status_list_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?
        .try_get("version")?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what: "status_list_state.version",
        value: v.to_string(),
    })
}

pub(super) async fn event(
    tx: &mut Tx,
    host_id: &str,
    now: i64,
    kind: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO host_events (host_id, at, kind, detail) VALUES ($1, $2, $3, $4)")
        .bind(host_id)
        .bind(now)
        .bind(kind)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Revoke every token of a host (called inside the appraisal transaction
/// when the host fails).
pub(super) async fn revoke_host_tokens(
    tx: &mut Tx,
    host_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let n = revoke_tree(tx, Root::Host(host_id), reason, now).await?;
    if n > 0 {
        event(
            tx,
            host_id,
            now,
            "tokens_revoked",
            &format!("{n} tokens: {reason}"),
        )
        .await?;
    }
    Ok(n)
}

pub(super) fn clock_to_db(c: u64) -> i64 {
    i64::try_from(c).unwrap_or(i64::MAX)
}

pub(super) fn clock_from_row(
    r: &sqlx::sqlite::SqliteRow,
) -> Result<Option<ClockState>, StoreError> {
    let reset: Option<i64> = r.try_get("tpm_reset_count")?;
    let restart: Option<i64> = r.try_get("tpm_restart_count")?;
    let clock: Option<i64> = r.try_get("tpm_clock")?;
    let corrupt = |what, v: i64| StoreError::Corrupt {
        what,
        value: v.to_string(),
    };
    Ok(match (reset, restart, clock) {
        (Some(a), Some(b), Some(c)) => Some(ClockState {
            reset_count: u32::try_from(a).map_err(|_| corrupt("hosts.tpm_reset_count", a))?,
            restart_count: u32::try_from(b).map_err(|_| corrupt("hosts.tpm_restart_count", b))?,
            clock: u64::try_from(c).map_err(|_| corrupt("hosts.tpm_clock", c))?,
        }),
        _ => None,
    })
}

fn token_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<TokenState, StoreError> {
    Ok(TokenState {
        record: SqliteStore::token_record(r)?,
        parent_cti: r.try_get("parent_cti")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
    })
}

pub(super) async fn revoke_host_in(
    tx: &mut Tx,
    host_id: &str,
    reason: &str,
    now: i64,
) -> Result<Applied, StoreError> {
    let done = sqlx::query("UPDATE hosts SET status = 'revoked', status_reason = $2 WHERE id = $1")
        .bind(host_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() != 1 {
        return Ok(Err(ChangeRefused::UnknownHost));
    }
    event(tx, host_id, now, "revoked", reason).await?;
    Ok(Ok(
        revoke_host_tokens(tx, host_id, "host_revoked", now).await?
    ))
}

pub(super) async fn reinstate_host_in(
    tx: &mut Tx,
    host_id: &str,
    now: i64,
) -> Result<Applied, StoreError> {
    let status: Option<String> = sqlx::query("SELECT status FROM hosts WHERE id = $1")
        .bind(host_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("status"))
        .transpose()?;
    match status.as_deref() {
        None => return Ok(Err(ChangeRefused::UnknownHost)),
        Some("revoked") => {}
        Some(_) => return Ok(Err(ChangeRefused::HostNotRevoked)),
    }
    sqlx::query(
        "UPDATE hosts SET status = 'enrolled', status_reason = NULL, tpm_reset_count = NULL,
           tpm_restart_count = NULL, tpm_clock = NULL WHERE id = $1 AND status = 'revoked'",
    )
    .bind(host_id)
    .execute(&mut *tx)
    .await?;
    super::request_key::delete_request_key_in(tx, host_id).await?;
    event(tx, host_id, now, "reinstated", "revoked -> enrolled").await?;
    Ok(Ok(0))
}

pub(super) async fn mark_stale_in(
    tx: &mut Tx,
    host_id: &str,
    cutoff: i64,
    now: i64,
) -> Result<Applied, StoreError> {
    let reason = stale_reason(cutoff);
    let done = sqlx::query(
        "UPDATE hosts SET status = 'stale', status_reason = $2 WHERE id = $1 AND status = 'trusted'
           AND (last_attested_at IS NULL OR last_attested_at < $3)",
    )
    .bind(host_id)
    .bind(&reason)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(Err(ChangeRefused::HostNotStale));
    }
    event(tx, host_id, now, "stale", &reason).await?;
    Ok(Ok(revoke_host_tokens(tx, host_id, "host_stale", now).await?))
}

pub(super) async fn revoke_token_in(
    tx: &mut Tx,
    cti: &[u8],
    reason: &str,
    now: i64,
) -> Result<Applied, StoreError> {
    let known = sqlx::query("SELECT 1 FROM tokens WHERE cti = $1")
        .bind(cti)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !known {
        return Ok(Err(ChangeRefused::UnknownToken));
    }
    Ok(Ok(revoke_tree(tx, Root::Token(cti), reason, now).await?))
}

pub(super) async fn revoke_workload_in(
    tx: &mut Tx,
    workload: &str,
    reason: &str,
    now: i64,
) -> Result<u64, StoreError> {
    revoke_tree(tx, Root::Workload(workload), reason, now).await
}

pub(super) async fn insert_derived_token_in(
    tx: &mut Tx,
    t: &TokenRecord,
    parent_cti: &[u8],
    host_fresh_since: i64,
) -> Result<Applied, StoreError> {
    let fresh = sqlx::query(
        "SELECT 1 FROM hosts WHERE id = $1 AND status = 'trusted' AND last_attested_at >= $2",
    )
    .bind(&t.host_id)
    .bind(host_fresh_since)
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    if !fresh {
        return Ok(Err(ChangeRefused::HostNotFresh));
    }
    let parent_live = sqlx::query("SELECT 1 FROM tokens WHERE cti = $1 AND revoked = 0")
        .bind(parent_cti)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !parent_live {
        return Ok(Err(ChangeRefused::ParentRevoked));
    }
    SqliteStore::insert_token_in(tx, t, Some(parent_cti)).await?;
    Ok(Ok(0))
}

impl SqliteStore {
    pub async fn check_and_record_clock(
        &self,
        host_id: &str,
        current: ClockState,
        boot: RebootEvidence,
        now: i64,
    ) -> Result<ClockCheck, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(
            "SELECT tpm_reset_count, tpm_restart_count, tpm_clock FROM hosts WHERE id = $1",
        )
        .bind(host_id)
        .fetch_optional(&mut *tx)
        .await?;
        let previous = match &row {
            Some(r) => clock_from_row(r)?,
            None => None,
        };
        let result = check_progress(previous.as_ref(), &current, boot);
        match &result {
            Ok(t) => {
                sqlx::query(
                    "UPDATE hosts SET tpm_reset_count = $2, tpm_restart_count = $3, tpm_clock = $4 WHERE id = $1",
                )
                .bind(host_id)
                .bind(i64::from(current.reset_count))
                .bind(i64::from(current.restart_count))
                .bind(clock_to_db(current.clock))
                .execute(&mut *tx)
                .await?;
                if matches!(t, ClockTransition::Rebooted | ClockTransition::Resumed) {
                    let detail = format!(
                        "reset_count {} -> {}, restart_count {} -> {}, boot log: {}",
                        previous.map_or(0, |p| p.reset_count),
                        current.reset_count,
                        previous.map_or(0, |p| p.restart_count),
                        current.restart_count,
                        if boot.new_boot_log { "new" } else { "none" }
                    );
                    event(&mut tx, host_id, now, t.as_str(), &detail).await?;
                }
            }
            Err(f) => {
                event(&mut tx, host_id, now, "clock_refused", &f.to_string()).await?;
            }
        }
        tx.commit().await?;
        Ok(result)
    }

    pub async fn host_clock(&self, host_id: &str) -> Result<Option<ClockState>, StoreError> {
        let row = sqlx::query(
            "SELECT tpm_reset_count, tpm_restart_count, tpm_clock FROM hosts WHERE id = $1",
        )
        .bind(host_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => clock_from_row(&r),
            None => Ok(None),
        }
    }

    pub async fn set_host_clock(
        &self,
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Trusted hosts whose last passing attestation is older than `cutoff`.
    pub async fn stale_candidates(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "SELECT id FROM hosts WHERE status = 'trusted'
               AND (last_attested_at IS NULL OR last_attested_at < $1) ORDER BY id",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("id").map_err(StoreError::from))
        .collect()
    }

    pub async fn token_state(&self, cti: &[u8]) -> Result<Option<TokenState>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE cti = $1")
            .bind(cti)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    pub async fn status_version(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let v = version(&mut tx).await?;
        tx.commit().await?;
        Ok(v)
    }

    pub async fn revoked_ctis(&self, cutoff: i64) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let v = version(&mut tx).await?;
        let rows = sqlx::query("SELECT cti FROM tokens WHERE revoked = 1 AND exp > $1")
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let ctis = rows
            .iter()
            .map(|r| r.try_get::<Vec<u8>, _>("cti"))
            .collect::<Result<_, _>>()?;
        Ok((v, ctis))
    }

    pub async fn host_events(&self, host_id: &str) -> Result<Vec<HostEvent>, StoreError> {
        let rows =
            sqlx::query("SELECT at, kind, detail FROM host_events WHERE host_id = $1 ORDER BY id")
                .bind(host_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(HostEvent {
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    pub async fn insert_revoked_tokens_for_bench(
        &self,
        ctis: &[Vec<u8>],
        exp: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for cti in ctis {
            sqlx::query(
                "INSERT INTO tokens (cti, host_id, workload, workload_digest, iat, exp, policy_id, token_digest, revoked, revocation_reason)
                 VALUES ($1, 'bench', 'bench', x'', 0, $2, 'bench', x'', 1, 'bench')",
            )
            .bind(cti)
            .bind(exp)
            .execute(&mut *tx)
            .await?;
        }
        bump_version(&mut tx).await?;
        let v = version(&mut tx).await?;
        tx.commit().await?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::*;
    use verifier_lib::host_clock::{ClockState, ClockTransition, RebootEvidence};
    use verifier_lib::policy::Failure;

    use crate::store::audit::{ChangeRefused, Entry, EntryError, StateChange};

    /// Apply one state change the way the audit writer does (here with no
    /// leaves): tokens revoked, or the refusal.
    async fn apply(s: &Store, change: StateChange) -> Result<u64, ChangeRefused> {
        let batch: Vec<crate::store::audit::PrepareEntry> = vec![Box::new(move |_| {
            Ok(Entry {
                change,
                leaves: Vec::new(),
            })
        })];
        let mut out = s.append_audit_batch(batch).await.unwrap();
        match out.pop().unwrap() {
            Ok(a) => Ok(a.tokens_revoked),
            Err(EntryError::Refused(r)) => Err(r),
            Err(e) => panic!("unexpected entry error: {e}"),
        }
    }

    fn derived(t: TokenRecord, parent: u8) -> StateChange {
        StateChange::DerivedToken {
            token: t,
            parent_cti: vec![parent; 16],
            host_fresh_since: 0,
        }
    }

    fn revoke_token(cti: u8, at: i64) -> StateChange {
        StateChange::RevokeToken {
            cti: vec![cti; 16],
            reason: "test".into(),
            at,
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (dir, Store::open(&url).await.unwrap())
    }

    fn host(id: &str) -> HostRecord {
        HostRecord {
            id: id.into(),
            status: HostStatus::Enrolled,
            ek_public: vec![1],
            ek_cert_digest: vec![2],
            ak_public: vec![3],
            ak_name: vec![4],
            enrolled_at: 1,
            last_attested_at: None,
            last_failure: None,
            policy_id: None,
        }
    }

    fn token(cti: u8, host: &str, exp: i64) -> TokenRecord {
        TokenRecord {
            cti: vec![cti; 16],
            host_id: host.into(),
            workload: "w".into(),
            workload_digest: vec![0; 32],
            iat: 100,
            exp,
            policy_id: "p".into(),
            token_digest: vec![cti; 32],
        }
    }

    fn appraisal(host: &str, at: i64, verdict: &str) -> AppraisalRecord {
        AppraisalRecord {
            host_id: host.into(),
            at,
            verdict: verdict.into(),
            policy_id: "p".into(),
            policy_hash: "h".into(),
            evidence_digest: vec![0; 32],
            failures: "[]".into(),
        }
    }

    #[tokio::test]
    async fn revocation_cascades_to_descendants_and_blocks_new_children() {
        let (_d, s) = store().await;
        s.upsert_host(&host("h")).await.unwrap();
        s.record_appraisal(
            &appraisal("h", 100, "affirming"),
            HostStatus::Trusted,
            Some(&token(1, "h", 1000)),
        )
        .await
        .unwrap();
        assert_eq!(apply(&s, derived(token(2, "h", 900), 1)).await, Ok(0));
        assert_eq!(apply(&s, derived(token(3, "h", 800), 2)).await, Ok(0));
        assert_eq!(
            apply(&s, derived(token(4, "h", 800), 9)).await,
            Err(ChangeRefused::ParentRevoked)
        );
        let v0 = s.status_version().await.unwrap();
        assert_eq!(apply(&s, revoke_token(2, 150)).await, Ok(2));
        let (v, ctis) = s.revoked_ctis(0).await.unwrap();
        assert_eq!(v, v0 + 1);
        assert_eq!(ctis.len(), 2);
        assert!(!s.token_state(&[1; 16]).await.unwrap().unwrap().revoked);
        // A revoked parent gets no children.
        assert_eq!(
            apply(&s, derived(token(5, "h", 800), 3)).await,
            Err(ChangeRefused::ParentRevoked)
        );
        // Revoking again changes nothing and keeps the version.
        assert_eq!(apply(&s, revoke_token(2, 151)).await, Ok(0));
        assert_eq!(s.status_version().await.unwrap(), v0 + 1);
        assert_eq!(
            apply(&s, revoke_token(8, 1)).await,
            Err(ChangeRefused::UnknownToken)
        );
        // Expired revoked tokens drop out of the list.
        assert_eq!(s.revoked_ctis(850).await.unwrap().1.len(), 1);
    }

    #[tokio::test]
    async fn failing_appraisal_and_staleness_revoke_host_tokens() {
        let (_d, s) = store().await;
        for h in ["a", "b"] {
            s.upsert_host(&host(h)).await.unwrap();
        }
        s.record_appraisal(
            &appraisal("a", 100, "affirming"),
            HostStatus::Trusted,
            Some(&token(1, "a", 1000)),
        )
        .await
        .unwrap();
        s.record_appraisal(
            &appraisal("b", 200, "affirming"),
            HostStatus::Trusted,
            Some(&token(2, "b", 1000)),
        )
        .await
        .unwrap();
        s.record_appraisal(
            &appraisal("a", 300, "contraindicated"),
            HostStatus::Failed,
            None,
        )
        .await
        .unwrap();
        assert!(s.token_state(&[1; 16]).await.unwrap().unwrap().revoked);
        assert!(!s.token_state(&[2; 16]).await.unwrap().unwrap().revoked);
        // b's last pass was at 200: stale with a cutoff of 250, a (failed) is left alone.
        assert_eq!(
            s.stale_candidates(250).await.unwrap(),
            vec!["b".to_string()]
        );
        let stale = |h: &str| StateChange::MarkStale {
            host_id: h.into(),
            cutoff: 250,
            at: 400,
        };
        assert_eq!(apply(&s, stale("b")).await, Ok(1));
        // a is failed, not trusted: not a stale candidate.
        assert_eq!(
            apply(&s, stale("a")).await,
            Err(ChangeRefused::HostNotStale)
        );
        assert_eq!(
            s.host("b").await.unwrap().unwrap().status,
            HostStatus::Stale
        );
        assert_eq!(
            s.host("a").await.unwrap().unwrap().status,
            HostStatus::Failed
        );
        assert!(s.token_state(&[2; 16]).await.unwrap().unwrap().revoked);
        let kinds: Vec<String> = s
            .host_events("b")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, vec!["stale", "tokens_revoked"]);
    }

    #[tokio::test]
    async fn revoke_reinstate_and_clock_baseline() {
        let (_d, s) = store().await;
        s.upsert_host(&host("h")).await.unwrap();
        let st = |reset, clock| ClockState {
            reset_count: reset,
            restart_count: 0,
            clock,
        };
        let none = RebootEvidence::default();
        assert_eq!(
            s.check_and_record_clock("h", st(1, 50), none, 1)
                .await
                .unwrap(),
            Ok(ClockTransition::First)
        );
        assert!(matches!(
            s.check_and_record_clock("h", st(1, 40), none, 2)
                .await
                .unwrap(),
            Err(Failure::TpmClockRollback {
                previous: 50,
                current: 40,
                ..
            })
        ));
        // A refused clock does not move the baseline.
        assert_eq!(s.host_clock("h").await.unwrap(), Some(st(1, 50)));
        assert_eq!(
            s.check_and_record_clock("h", st(2, 10), none, 3)
                .await
                .unwrap(),
            Ok(ClockTransition::Rebooted)
        );
        let reinstate = |at| StateChange::ReinstateHost {
            host_id: "h".into(),
            at,
        };
        let revoke = |h: &str, at| StateChange::RevokeHost {
            host_id: h.into(),
            reason: "op".into(),
            at,
        };
        assert_eq!(
            apply(&s, reinstate(4)).await,
            Err(ChangeRefused::HostNotRevoked)
        );
        assert_eq!(apply(&s, revoke("h", 5)).await, Ok(0));
        assert_eq!(
            s.host("h").await.unwrap().unwrap().status,
            HostStatus::Revoked
        );
        // An appraisal does not un-revoke.
        s.record_appraisal(&appraisal("h", 6, "affirming"), HostStatus::Trusted, None)
            .await
            .unwrap();
        assert_eq!(
            s.host("h").await.unwrap().unwrap().status,
            HostStatus::Revoked
        );
        assert_eq!(apply(&s, reinstate(7)).await, Ok(0));
        assert_eq!(
            s.host("h").await.unwrap().unwrap().status,
            HostStatus::Enrolled
        );
        assert_eq!(s.host_clock("h").await.unwrap(), None);
        assert_eq!(
            apply(&s, revoke("zz", 8)).await,
            Err(ChangeRefused::UnknownHost)
        );
        let kinds: Vec<String> = s
            .host_events("h")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec!["clock_refused", "rebooted", "revoked", "reinstated"]
        );
    }
}
