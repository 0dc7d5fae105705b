//! Where a workload runs and how it is watched: a fresh Postgres database or SQLite
//! file per workload, the queries the harness itself runs against it, and the meters
//! (CPU, transactions, WAL) read around a measured phase.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

/// The server (Postgres) or directory (SQLite) that fresh databases are made in.
pub struct Backend {
    admin_url: String,
    /// Postgres only: a small pool on the admin database, for CREATE/DROP DATABASE
    /// and the statistics views. Never connected to a bench database, so its own
    /// queries do not count in that database's transactions.
    admin: Option<PgPool>,
    sqlite_dir: PathBuf,
    /// Sample `pg_stat_activity` during measured phases (Postgres).
    pub sample_activity: bool,
}

/// One fresh database (or SQLite file), used by one workload and removed after.
pub struct Db {
    /// The store URL the engine is given.
    pub url: String,
    /// Postgres: the database name. SQLite: the file path.
    name: String,
}

impl Backend {
    /// `store` is a Postgres admin URL (`postgres://user@host:port/db`, a user allowed
    /// to create databases) or `sqlite://` / `sqlite://DIR` (fresh files go to DIR,
    /// else the system temporary directory).
    pub async fn connect(store: &str) -> Result<Self> {
        if let Some(rest) = store.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let dir = if path.is_empty() {
                std::env::temp_dir()
            } else {
                let dir = PathBuf::from(path);
                if !dir.is_dir() {
                    bail!(
                        "--store {store}: for SQLite give a directory (or nothing, for the \
                         temporary directory); each workload creates its own file there"
                    );
                }
                dir
            };
            Ok(Self {
                admin_url: store.to_owned(),
                admin: None,
                sqlite_dir: dir,
                sample_activity: false,
            })
        } else if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            let admin = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect(store)
                .await
                .with_context(|| format!("connecting to {}", redact(store)))?;
            Ok(Self {
                admin_url: store.to_owned(),
                admin: Some(admin),
                sqlite_dir: PathBuf::new(),
                sample_activity: false,
            })
        } else {
            bail!("--store must be postgres://... or sqlite://[DIR], not {store:?}")
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.admin.is_some()
    }

    pub fn label(&self) -> &'static str {
        if self.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Creates an empty database `sy_bench_<tag>_<random>` (or SQLite file).
    pub async fn fresh(&self, tag: &str) -> Result<Db> {
        let name = format!("sy_bench_{tag}_{:08x}", rand::random::<u32>());
        match &self.admin {
            Some(admin) => {
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin)
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                Ok(Db {
                    url: with_database(&self.admin_url, &name),
                    name,
                })
            }
            None => {
                let path = self.sqlite_dir.join(format!("{name}.db"));
                Ok(Db {
                    url: format!("sqlite://{}", path.display()),
                    name: path.display().to_string(),
                })
            }
        }
    }

    /// Drops the database (forcibly disconnecting anything left) or deletes the file.
    pub async fn remove(&self, db: Db) {
        match &self.admin {
            Some(admin) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name);
                if let Err(error) = sqlx::query(&sql).execute(admin).await {
                    eprintln!("warning: could not drop database {}: {error}", db.name);
                }
            }
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.name));
                }
            }
        }
    }

    /// Committed plus rolled-back transactions of the database so far (Postgres).
    /// Backends publish these when they go idle for a while or exit, so read it
    /// after [`Backend::settle`].
    async fn xacts(&self, db: &Db) -> Result<Option<i64>> {
        let Some(admin) = &self.admin else {
            return Ok(None);
        };
        let count: i64 = sqlx::query_scalar(
            "SELECT coalesce((SELECT (xact_commit + xact_rollback)::bigint
                              FROM pg_stat_database WHERE datname = $1), 0)",
        )
        .bind(&db.name)
        .fetch_one(admin)
        .await?;
        Ok(Some(count))
    }

    /// The server's current WAL insert position in bytes (Postgres). Server-wide:
    /// anything else writing to this server at the same time is counted too.
    async fn wal_position(&self) -> Result<Option<i64>> {
        let Some(admin) = &self.admin else {
            return Ok(None);
        };
        let lsn: i64 =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
                .fetch_one(admin)
                .await?;
        Ok(Some(lsn))
    }

    /// Waits (up to 15 s) until no session is connected to the database, so that
    /// every backend that worked on it has published its statistics.
    pub async fn settle(&self, db: &Db) -> bool {
        let Some(admin) = &self.admin else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let sessions: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&db.name)
                    .fetch_one(admin)
                    .await;
            if matches!(sessions, Ok(0)) {
                return true;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: sessions still connected to {}; its transaction count may be low",
                    db.name
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Replaces the database of a Postgres URL, keeping user, host, port and query.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    switchyard_core::config::redact_url(url)
}

/// The harness's own connection to a bench database, for counts and status polls.
/// It counts its queries so they can be taken out of the transaction figures.
pub struct Monitor {
    pool: MonitorPool,
    queries: AtomicU64,
}

enum MonitorPool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

impl Monitor {
    /// Connects to a database the engine has already created and migrated.
    pub async fn open(db: &Db) -> Result<Self> {
        let pool = if db.url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&db.url)?
                .create_if_missing(false)
                .busy_timeout(Duration::from_secs(5));
            MonitorPool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?,
            )
        } else {
            MonitorPool::Pg(
                PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&db.url)
                    .await?,
            )
        };
        Ok(Self {
            pool,
            queries: AtomicU64::new(0),
        })
    }

    /// Statements this monitor ran (each its own transaction).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    async fn scalar(&self, pg: &str, sqlite: &str) -> Result<i64> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(match &self.pool {
            MonitorPool::Pg(pool) => sqlx::query_scalar(pg).fetch_one(pool).await?,
            MonitorPool::Sqlite(pool) => sqlx::query_scalar(sqlite).fetch_one(pool).await?,
        })
    }

    /// Rows in the event log.
    pub async fn count_events(&self) -> Result<i64> {
        self.scalar(
            "SELECT count(*) FROM switchyard.events",
            "SELECT count(*) FROM events",
        )
        .await
    }

    /// Deliveries not yet succeeded.
    pub async fn unfinished(&self) -> Result<i64> {
        self.scalar(
            "SELECT count(*) FROM switchyard.deliveries WHERE status <> 'succeeded'",
            "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'",
        )
        .await
    }

    /// Whether every delivery of the event has succeeded (false also when it has none).
    pub async fn event_done(&self, event: Uuid) -> Result<bool> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let (total, done): (i64, i64) = match &self.pool {
            MonitorPool::Pg(pool) => {
                sqlx::query_as(
                    "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded')
                     FROM switchyard.deliveries WHERE event_id = $1",
                )
                .bind(event)
                .fetch_one(pool)
                .await?
            }
            MonitorPool::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT count(*), coalesce(sum(status = 'succeeded'), 0)
                     FROM deliveries WHERE event_id = ?1",
                )
                .bind(event.hyphenated().to_string())
                .fetch_one(pool)
                .await?
            }
        };
        Ok(total > 0 && total == done)
    }

    /// Postgres: whether `deliveries` has been analyzed since it was filled, as
    /// `rows changed since the last analyze, analyzed at all`. The claim's plan
    /// depends on it.
    pub async fn deliveries_analyzed(&self) -> Result<Option<(i64, bool)>> {
        let MonitorPool::Pg(pool) = &self.pool else {
            return Ok(None);
        };
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(sqlx::query_as(
            "SELECT n_mod_since_analyze, (last_autoanalyze IS NOT NULL OR last_analyze IS NOT NULL)
             FROM pg_stat_user_tables WHERE schemaname = 'switchyard' AND relname = 'deliveries'",
        )
        .fetch_optional(pool)
        .await?)
    }

    pub async fn close(self) {
        match self.pool {
            MonitorPool::Pg(pool) => pool.close().await,
            MonitorPool::Sqlite(pool) => pool.close().await,
        }
    }
}

/// CPU seconds used so far: this process (engine and load generator together) and
/// every process named `postgres` on this machine.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    /// This process and the children it has waited for: a load generator run as its
    /// own process (wrk, pgbench) counts here once it has exited, as the built-in
    /// clients count here while they run.
    pub own: f64,
    pub postgres: Option<f64>,
    /// Busy time of the whole machine (all cores), from `/proc/stat`.
    pub machine: Option<f64>,
}

impl Cpu {
    pub fn now() -> Self {
        Self {
            own: rusage(libc::RUSAGE_SELF) + rusage(libc::RUSAGE_CHILDREN),
            postgres: postgres_cpu(),
            machine: machine_busy(),
        }
    }
}

fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes into the struct we pass, which is plain data.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Non-idle time of all cores since boot (first line of `/proc/stat`).
fn machine_busy() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let busy = busy_ticks(stat.lines().next()?)?;
    (ticks > 0).then(|| busy as f64 / ticks as f64)
}

/// `cpu  user nice system idle iowait irq softirq steal ...`: all but idle and iowait.
fn busy_ticks(line: &str) -> Option<u64> {
    let values: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    Some(total - values.get(3)? - values.get(4)?)
}

/// User + system time of every `postgres` process, plus what the postmaster has
/// collected from its exited children. Linux only; `None` elsewhere or if nothing
/// is found. Server-wide: other databases' work counts too.
fn postgres_cpu() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let mut total: u64 = 0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(ticks) = postgres_ticks(&stat) {
            total += ticks;
            found = true;
        }
    }
    found.then(|| total as f64 / ticks as f64)
}

/// utime + stime + cutime + cstime of a `/proc/PID/stat` line whose command is
/// `postgres`.
fn postgres_ticks(stat: &str) -> Option<u64> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if !stat[open + 1..close].starts_with("postgres") {
        return None;
    }
    // Fields after the command start at field 3 (state); utime is field 14.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(field(14)? + field(15)? + field(16)? + field(17)?)
}

/// Readings taken at the start of a measured phase.
pub struct Meter {
    start: Instant,
    cpu: Cpu,
    wal: Option<i64>,
    xacts: Option<i64>,
    activity: Option<(String, ActivitySampler)>,
}

/// Samples, every 20 ms, what the sessions on a bench database are doing: the
/// statement each active session runs and what it waits for (`CPU` when nothing).
struct ActivitySampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, HashMap<String, u64>)>,
}

impl ActivitySampler {
    fn start(admin: PgPool, database: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = 0u64;
            let mut seen: HashMap<String, u64> = HashMap::new();
            while !flag.load(Ordering::Relaxed) {
                let rows: Result<Vec<(String, String)>, _> = sqlx::query_as(
                    "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 80),
                            coalesce(wait_event_type || ':' || wait_event, 'CPU')
                     FROM pg_stat_activity WHERE datname = $1 AND state = 'active'",
                )
                .bind(&database)
                .fetch_all(&admin)
                .await;
                if let Ok(rows) = rows {
                    samples += 1;
                    for (query, wait) in rows {
                        *seen
                            .entry(format!("{wait} | {}", query.trim()))
                            .or_default() += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (samples, seen)
        });
        Self { stop, task }
    }

    /// Stops sampling and prints the statements by average active sessions.
    async fn finish(self, label: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let Ok((samples, seen)) = self.task.await else {
            return;
        };
        if samples == 0 {
            return;
        }
        let mut seen: Vec<(String, u64)> = seen.into_iter().collect();
        seen.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let busy: u64 = seen.iter().map(|(_, n)| n).sum();
        println!(
            "\nPG activity during {label}: {samples} samples, {:.2} sessions active on average",
            busy as f64 / samples as f64
        );
        for (what, n) in seen.iter().take(8) {
            println!("  {:>5.2}  {what}", *n as f64 / samples as f64);
        }
    }
}

/// What a measured phase used. Transactions exclude the harness's own queries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub elapsed: Duration,
    pub cpu_own: f64,
    pub cpu_postgres: Option<f64>,
    /// Busy CPU of everything else on the machine (other builds, tests, services):
    /// if large, the figures were disturbed.
    pub cpu_other: Option<f64>,
    pub wal_bytes: Option<i64>,
    pub xacts: Option<i64>,
}

impl Meter {
    /// Call with no session connected to `db` (fresh, or after [`Backend::settle`]).
    /// `label` names the phase in the activity report (`--pg-activity`).
    pub async fn start(backend: &Backend, db: &Db, label: &str) -> Result<Self> {
        let xacts = backend.xacts(db).await?;
        let wal = backend.wal_position().await?;
        let activity = match &backend.admin {
            Some(admin) if backend.sample_activity => Some((
                label.to_owned(),
                ActivitySampler::start(admin.clone(), db.name.clone()),
            )),
            _ => None,
        };
        Ok(Self {
            start: Instant::now(),
            cpu: Cpu::now(),
            wal,
            xacts,
            activity,
        })
    }

    /// Ends the phase for time, CPU and WAL. Transactions are read by
    /// [`Stopped::finish`] once the engine has stopped.
    pub async fn stop(self, backend: &Backend) -> Result<Stopped> {
        let elapsed = self.start.elapsed();
        let mut cpu = Cpu::now();
        if !backend.is_postgres() {
            cpu.postgres = None;
        }
        let wal = backend.wal_position().await?;
        if let Some((label, sampler)) = self.activity {
            sampler.finish(&label).await;
        }
        Ok(Stopped {
            usage: Usage {
                elapsed,
                cpu_own: cpu.own - self.cpu.own,
                cpu_postgres: cpu.postgres.zip(self.cpu.postgres).map(|(b, a)| b - a),
                cpu_other: cpu.machine.zip(self.cpu.machine).map(|(b, a)| {
                    let postgres = cpu
                        .postgres
                        .zip(self.cpu.postgres)
                        .map_or(0.0, |(b, a)| b - a);
                    (b - a - (cpu.own - self.cpu.own) - postgres).max(0.0)
                }),
                wal_bytes: wal.zip(self.wal).map(|(b, a)| b - a),
                xacts: None,
            },
            xacts: self.xacts,
        })
    }
}

/// A phase that has ended, waiting for its transaction count.
pub struct Stopped {
    usage: Usage,
    xacts: Option<i64>,
}

impl Stopped {
    /// Call after the engine has shut down and the monitor is closed: waits for the
    /// database's sessions to end, then reads its transaction count, less the
    /// monitor's `own_queries`.
    pub async fn finish(self, backend: &Backend, db: &Db, own_queries: u64) -> Usage {
        let mut usage = self.usage;
        if backend.is_postgres() {
            backend.settle(db).await;
            if let (Ok(Some(after)), Some(before)) = (backend.xacts(db).await, self.xacts) {
                usage.xacts = Some(after - before - i64::try_from(own_queries).unwrap_or(0));
            }
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b1"),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b2"),
            "postgres://u:p@h/b2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "b3"),
            "postgres://h:5432/b3"
        );
        assert_eq!(
            with_database("postgresql://h/?application_name=x", "b4"),
            "postgresql://h/b4?application_name=x"
        );
    }

    #[test]
    fn reads_machine_busy_time() {
        let line = "cpu  100 5 50 1000 20 1 2 3 0 0";
        assert_eq!(busy_ticks(line), Some(100 + 5 + 50 + 1 + 2 + 3));
        assert_eq!(busy_ticks("cpu0 1 2 3"), None);
    }

    #[test]
    fn reads_postgres_cpu_from_proc_stat() {
        let stat = "123 (postgres) S 1 123 123 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 5 0 0";
        assert_eq!(postgres_ticks(stat), Some(7 + 3 + 2 + 1));
        let other = "124 (bash) S 1 124 124 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 5 0 0";
        assert_eq!(postgres_ticks(other), None);
    }
}
