//! What the store costs per decision: on PostgreSQL the server's own
//! counters (`pg_stat_database`, `pg_stat_wal`, database size) and the CPU
//! time of its processes (`/proc/PID/stat` of every `pg_stat_activity`
//! pid); on SQLite (in-process) the database growth. Both: this process's
//! CPU time (brokers, clients, local KDS, and SQLite when it is the store).
//!
//! PostgreSQL publishes a backend's counters up to 10 s late
//! (`PGSTAT_IDLE_INTERVAL`) while it lives, and at once when it exits: the
//! first snapshot is taken after 11 s without load, the last after the
//! brokers stopped and their connections ended.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::Connection;

/// Where the brokers of one scenario keep their state.
pub enum DbProbe {
    Sqlite(String),
    Postgres(String),
}

#[derive(Clone, Default)]
struct PgCounters {
    /// xact_commit, xact_rollback, blks_read, blks_hit, tup_returned,
    /// tup_fetched, tup_inserted, tup_updated, tup_deleted, wal_records,
    /// wal_bytes, wal_sync.
    values: [i64; 12],
}

const PG_NAMES: [&str; 12] = [
    "commits",
    "rollbacks",
    "blocks read",
    "blocks hit",
    "tuples returned",
    "tuples fetched",
    "tuples inserted",
    "tuples updated",
    "tuples deleted",
    "WAL records",
    "WAL bytes",
    "WAL syncs",
];

/// One reading.
#[derive(Clone)]
pub struct Snapshot {
    at: Instant,
    self_cpu: Duration,
    server_cpu: BTreeMap<i32, Duration>,
    pg: Option<PgCounters>,
    db_bytes: i64,
}

fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (`/proc/PID/stat` fields 14 and 15).
fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(Duration::from_secs_f64(ticks / ticks_per_sec()))
}

async fn pg(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.unwrap()
}

/// Make the throw-away server as durable as the broker's SQLite (or keep
/// the harness's settings); returns the settings in effect.
pub async fn configure_server(url: &str, durable: bool) -> String {
    let mut c = pg(url).await;
    if durable {
        for s in [
            "ALTER SYSTEM SET fsync = on",
            "ALTER SYSTEM SET synchronous_commit = on",
            "ALTER SYSTEM SET full_page_writes = on",
        ] {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut c)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(c);
    let mut c = pg(url).await;
    let (f, s, w): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('fsync'), current_setting('synchronous_commit'), \
         current_setting('full_page_writes')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    format!("fsync={f}, synchronous_commit={s}, full_page_writes={w}")
}

impl DbProbe {
    pub fn new(storage_url: &str) -> DbProbe {
        if storage_url.starts_with("postgres") {
            DbProbe::Postgres(storage_url.to_owned())
        } else {
            DbProbe::Sqlite(storage_url.to_owned())
        }
    }

    async fn read(&self, with_counters: bool) -> Snapshot {
        let at = Instant::now();
        let self_cpu = cpu_of("self").unwrap_or_default();
        match self {
            DbProbe::Sqlite(url) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).unwrap();
                let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
                let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                let (size,): (i64,) = sqlx::query_as("PRAGMA page_size")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                Snapshot {
                    at,
                    self_cpu,
                    server_cpu: BTreeMap::new(),
                    pg: None,
                    db_bytes: pages * size,
                }
            }
            DbProbe::Postgres(url) => {
                let mut c = pg(url).await;
                let pids: Vec<(i32,)> = sqlx::query_as(
                    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                let server_cpu = pids
                    .into_iter()
                    .filter_map(|(p,)| cpu_of(&p.to_string()).map(|t| (p, t)))
                    .collect();
                let pg = if with_counters {
                    let d: (i64, i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
                        "SELECT xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, \
                         tup_fetched, tup_inserted, tup_updated, tup_deleted \
                         FROM pg_stat_database WHERE datname = current_database()",
                    )
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                    let w: (i64, i64, i64) = sqlx::query_as(
                        "SELECT wal_records, wal_bytes::bigint, wal_sync FROM pg_stat_wal",
                    )
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                    Some(PgCounters {
                        values: [d.0, d.1, d.2, d.3, d.4, d.5, d.6, d.7, d.8, w.0, w.1, w.2],
                    })
                } else {
                    None
                };
                let (db_bytes,): (i64,) =
                    sqlx::query_as("SELECT pg_database_size(current_database())")
                        .fetch_one(&mut c)
                        .await
                        .unwrap();
                Snapshot {
                    at,
                    self_cpu,
                    server_cpu,
                    pg,
                    db_bytes,
                }
            }
        }
    }

    /// Before the measured window: on PostgreSQL after 11 s without load,
    /// so every backend has published its counters.
    pub async fn snapshot_quiet(&self) -> Snapshot {
        if let DbProbe::Postgres(_) = self {
            tokio::time::sleep(Duration::from_secs(11)).await;
        }
        self.read(true).await
    }

    /// Right after the window, brokers still up: the CPU times (and the
    /// SQLite size, whose file goes with its broker).
    pub async fn snapshot_live(&self) -> Snapshot {
        self.read(false).await
    }

    /// After the brokers stopped: PostgreSQL's counters once every broker
    /// connection has ended (each publishes its counters as it exits).
    pub async fn snapshot_after_stop(&self, live: Snapshot) -> Snapshot {
        let DbProbe::Postgres(url) = self else {
            return live;
        };
        let mut c = pg(url).await;
        for _ in 0..150 {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(c);
        let last = self.read(true).await;
        Snapshot {
            pg: last.pg,
            db_bytes: last.db_bytes,
            ..live
        }
    }
}

/// The difference of two snapshots.
pub struct DbCost {
    window: Duration,
    self_cpu: Duration,
    signing: Duration,
    server_cpu: Option<Duration>,
    pg: Option<PgCounters>,
    db_bytes: i64,
}

impl DbCost {
    /// From `before` to `after`; `signing` is the clients' report signing
    /// time inside this process.
    pub fn between(before: &Snapshot, after: &Snapshot, signing: Duration) -> DbCost {
        let server_cpu = after.pg.as_ref().map(|_| {
            after
                .server_cpu
                .iter()
                .map(|(pid, t)| {
                    t.saturating_sub(before.server_cpu.get(pid).copied().unwrap_or_default())
                })
                .sum()
        });
        let pg = match (&before.pg, &after.pg) {
            (Some(b), Some(a)) => {
                let mut d = PgCounters::default();
                for i in 0..d.values.len() {
                    d.values[i] = a.values[i] - b.values[i];
                }
                Some(d)
            }
            _ => None,
        };
        DbCost {
            window: after.at - before.at,
            self_cpu: after.self_cpu.saturating_sub(before.self_cpu),
            signing,
            server_cpu,
            pg,
            db_bytes: after.db_bytes - before.db_bytes,
        }
    }

    /// Per-decision lines for `decisions` completed appraisals.
    pub fn lines(&self, decisions: u64) -> Vec<String> {
        let n = decisions.max(1) as f64;
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let used = self.self_cpu + self.server_cpu.unwrap_or_default();
        let mut out = vec![format!(
            "CPU: {:.0} µs in this process (brokers, clients, KDS{}), of which {:.0} µs the \
             guests' report signing{}; these used {:.0}% of the {} cores over the window \
             (the rest was idle or other work on the machine)",
            us(self.self_cpu),
            if self.pg.is_none() { ", SQLite" } else { "" },
            us(self.signing),
            self.server_cpu
                .map(|t| format!("; {:.0} µs in PostgreSQL's processes", us(t)))
                .unwrap_or_default(),
            100.0 * used.as_secs_f64() / (cores * self.window.as_secs_f64()),
            cores
        )];
        out.push(format!(
            "database growth: {:.0} bytes",
            self.db_bytes as f64 / n
        ));
        if let Some(pg) = &self.pg {
            let parts: Vec<String> = PG_NAMES
                .iter()
                .zip(pg.values)
                .map(|(name, v)| format!("{name} {:.2}", v as f64 / n))
                .collect();
            out.push(format!("PostgreSQL: {}", parts[..5].join(", ")));
            out.push(format!("            {}", parts[5..].join(", ")));
        }
        out
    }
}
