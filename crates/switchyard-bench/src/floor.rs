//! `floor`: the raw write rate of this database, without Switchyard.
//!
//! Eight connections each insert a 256-byte JSON row and commit, back to back, for
//! the run's duration; then the same with 500 rows per transaction. The single-row
//! rate is the denominator of the ingest ratio: it is what a naive "one INSERT per
//! request" webhook receiver gets from the same disk and server. `--floor` picks who
//! runs the single-row inserts: `pgbench` (see [`crate::pgbench`]) or the harness's
//! own sqlx pool (`builtin`), which also runs the 500-row inserts either way.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::backend::{Backend, Meter};
use crate::report::{Row, Summary, print_table};
use crate::stats::{Percentiles, micros, payload};
use crate::{Args, Ctx, FloorClient, pgbench};

const BATCH: usize = 500;

#[derive(Clone)]
enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

impl Pool {
    async fn open(url: &str, connections: u32) -> Result<Self> {
        if url.starts_with("sqlite:") {
            // As the store opens its file: WAL, synchronous = FULL.
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(connections)
                .connect_with(options)
                .await?;
            sqlx::query("CREATE TABLE floor (id INTEGER PRIMARY KEY, data TEXT NOT NULL)")
                .execute(&pool)
                .await?;
            Ok(Self::Sqlite(pool))
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(connections)
                .min_connections(connections)
                .connect(url)
                .await?;
            sqlx::query("CREATE TABLE floor (id BIGSERIAL PRIMARY KEY, data JSONB NOT NULL)")
                .execute(&pool)
                .await?;
            Ok(Self::Pg(pool))
        }
    }

    async fn insert_one(&self, row: String) -> Result<()> {
        match self {
            Self::Pg(pool) => {
                sqlx::query("INSERT INTO floor (data) VALUES ($1::jsonb)")
                    .bind(row)
                    .execute(pool)
                    .await?;
            }
            Self::Sqlite(pool) => {
                sqlx::query("INSERT INTO floor (data) VALUES (?1)")
                    .bind(row)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn insert_batch(&self, rows: Vec<String>) -> Result<()> {
        match self {
            Self::Pg(pool) => {
                sqlx::query("INSERT INTO floor (data) SELECT unnest($1::text[])::jsonb")
                    .bind(rows)
                    .execute(pool)
                    .await?;
            }
            Self::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                for row in rows {
                    sqlx::query("INSERT INTO floor (data) VALUES (?1)")
                        .bind(row)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn close(self) {
        match self {
            Self::Pg(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

async fn phase(backend: &Backend, args: &Args, batch: usize) -> Result<Row> {
    let connections = args.floor_connections;
    let db = backend.fresh("floor").await?;
    let result = async {
        let pool = Pool::open(&db.url, connections).await?;
        let meter = Meter::start(backend, &db, &format!("floor, {batch} row(s) per txn")).await?;
        let deadline = Instant::now() + args.duration;
        let mut tasks = Vec::new();
        for worker in 0..connections {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut seq = u64::from(worker) << 40;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    if batch == 1 {
                        seq += 1;
                        pool.insert_one(payload(seq)).await?;
                    } else {
                        let rows = (0..batch as u64).map(|i| payload(seq + i)).collect();
                        seq += batch as u64;
                        pool.insert_batch(rows).await?;
                    }
                    latencies.push(micros(started.elapsed()));
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let stopped = meter.stop(backend).await?;
        pool.close().await;
        let usage = stopped.finish(backend, &db, 0).await;
        let rows = (latencies.len() * batch) as u64;
        let name = if batch == 1 {
            format!("single-row INSERT+COMMIT, {connections} conns")
        } else {
            format!("{batch}-row INSERT per txn, {connections} conns")
        };
        Ok(Row::new(
            name,
            rows,
            "rows",
            rows as f64 / usage.elapsed.as_secs_f64(),
        )
        .latency(Percentiles::of(latencies))
        .usage(usage)
        .note("latency per transaction"))
    }
    .await;
    backend.remove(db).await;
    result
}

/// The single-row inserts run by pgbench, in a fresh database whose removal takes the
/// table with it.
async fn pgbench_phase(backend: &Backend, args: &Args) -> Result<Row> {
    let clients = args.floor_connections;
    let db = backend.fresh("floor").await?;
    let result = async {
        pgbench::create_table(&db.url).await?;
        let meter = Meter::start(backend, &db, "floor, pgbench").await?;
        let report = pgbench::run(&db.url, clients, args.duration).await?;
        let stopped = meter.stop(backend).await?;
        let usage = stopped.finish(backend, &db, 0).await;
        if report.failed > 0 {
            bail!("pgbench: {} transactions failed", report.failed);
        }
        Ok(Row::new(
            format!("single-row INSERT+COMMIT, {clients} conns, pgbench -M prepared"),
            report.transactions,
            "rows",
            report.tps,
        )
        .usage(usage)
        .note(format!(
            "pgbench's tps without initial connection time; latency average {:.3} ms; \
             CPU s/1k includes pgbench",
            report.latency_ms
        )))
    }
    .await;
    backend.remove(db).await;
    result
}

pub async fn run(ctx: &Ctx, summary: &mut Summary) -> Result<()> {
    let single = match ctx.floor {
        FloorClient::Builtin => phase(&ctx.backend, &ctx.args, 1).await?,
        FloorClient::Pgbench => pgbench_phase(&ctx.backend, &ctx.args).await?,
    };
    summary.floor_single = Some(single.rate);
    summary.floor_client = ctx.floor;
    let batched = phase(&ctx.backend, &ctx.args, BATCH).await?;
    summary.floor_batch = Some(batched.rate);
    print_table(
        &format!(
            "floor ({}): raw INSERT rate of 256-byte JSON rows",
            ctx.backend.label()
        ),
        "per txn",
        &[single, batched],
    );
    Ok(())
}
