//! `retention`: a claim's latency while retention deletes a backlog of old events
//! (Postgres only).
//!
//! Seeds `--retained-rows` events received 40 days ago, each with one succeeded
//! delivery, straight into the tables. Then, in the same database and run:
//! 1. claims alone for `--duration`: rounds of 64 appended events, each claimed one
//!    at a time (timed) and finished;
//! 2. the same claims while `switchyard_store::delete_expired` deletes every seeded
//!    event (default retention: 30 days), until it is done.
//!
//! Reported: each phase's claim p50/p90/p99/max, the ratio of phase 2 to phase 1, and
//! how long retention took for how many rows. Only the claim is timed; the append and
//! the finish around it are not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use sqlx::postgres::PgPoolOptions;
use switchyard_core::Event;
use switchyard_core::config::RetentionConfig;
use switchyard_store::{
    AttemptOutcome, Finished, NewDelivery, NewEvent, PostgresStore, Store, delete_expired,
};
use tokio::sync::watch;

use crate::Ctx;
use crate::stats::{Percentiles, fmt_us, micros};

const ROUND: usize = 64;
const LEASE: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Ctx) -> Result<()> {
    if !ctx.backend.is_postgres() {
        bail!("the retention workload runs on Postgres only (--store postgres://...)");
    }
    let db = ctx.backend.fresh("retention").await?;
    let result = measure(ctx, &db.url).await;
    ctx.backend.remove(db).await;
    result
}

async fn measure(ctx: &Ctx, url: &str) -> Result<()> {
    let rows = ctx.args.retained_rows;
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(url).await?);
    store.migrate().await?;
    let seeding = Instant::now();
    seed(url, rows).await?;
    eprintln!(
        "retention: seeded {rows} old events in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let (_never, alone) = watch::channel(false);
    let baseline = claims(&store, ctx.args.duration, alone).await?;

    let (done_tx, done_rx) = watch::channel(false);
    let started = Instant::now();
    let deleting = tokio::spawn({
        let store = store.clone();
        async move {
            let deleted = delete_expired(&*store, &RetentionConfig::default(), Utc::now()).await;
            let _ = done_tx.send(true);
            deleted
        }
    });
    let during = claims(&store, Duration::MAX, done_rx).await?;
    let deleted = deleting.await.context("the retention task panicked")??;
    let took = started.elapsed();
    if deleted.events != rows {
        bail!("retention deleted {} of {rows} old events", deleted.events);
    }

    let (Some(alone), Some(busy)) = (Percentiles::of(baseline), Percentiles::of(during)) else {
        bail!("no claims were timed");
    };
    println!(
        "\n### retention (postgres): claim latency while retention deletes {rows} old events\n"
    );
    println!("| phase | claims | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (phase, p) in [("claims alone", &alone), ("claims during retention", &busy)] {
        println!(
            "| {phase} | {} | {} | {} | {} | {} |",
            p.count,
            fmt_us(p.p50),
            fmt_us(p.p90),
            fmt_us(p.p99),
            fmt_us(p.max)
        );
    }
    let ratio = |during: u64, alone: u64| during as f64 / alone.max(1) as f64;
    println!(
        "| during / alone | | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
        ratio(busy.p50, alone.p50),
        ratio(busy.p90, alone.p90),
        ratio(busy.p99, alone.p99),
        ratio(busy.max, alone.max)
    );
    println!(
        "\nretention deleted {} events, {} deliveries and {} attempts (rolled up into usage) in {:.1} s: {:.0} events/s, batches of {}.",
        deleted.events,
        deleted.deliveries,
        deleted.attempts,
        took.as_secs_f64(),
        deleted.events as f64 / took.as_secs_f64(),
        switchyard_store::RETENTION_BATCH
    );
    Ok(())
}

/// Inserts `rows` events received 40 days ago, each with one delivery that succeeded
/// at its first attempt, in chunks of 100,000.
async fn seed(url: &str, rows: u64) -> Result<()> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let mut done = 0;
    while done < rows {
        let chunk = (rows - done).min(100_000);
        sqlx::query(
            "WITH e AS (
                INSERT INTO switchyard.events (id, source_name, source, type, time, received_at)
                SELECT gen_random_uuid(), 'old', '/old', 'bench.old', t, t
                FROM (SELECT now() - interval '40 days' + (($1 + g) * interval '1 ms') AS t
                      FROM generate_series(1, $2) g) times
                RETURNING id, received_at)
             INSERT INTO switchyard.deliveries
                (event_id, trigger, status, attempts, run_at, created_at, updated_at,
                 final_started_at, final_duration_ms, final_outcome)
             SELECT id, 'old', 'succeeded', 1, received_at, received_at, received_at,
                    received_at, 5, 'succeeded'
             FROM e",
        )
        .bind(i64::try_from(done)?)
        .bind(i64::try_from(chunk)?)
        .execute(&pool)
        .await?;
        done += chunk;
    }
    sqlx::query("ANALYZE switchyard.events")
        .execute(&pool)
        .await?;
    sqlx::query("ANALYZE switchyard.deliveries")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Appends and claims one delivery at a time, timing each claim, for `duration` or
/// until `stop` holds `true`, whichever is first. Returns the claim times in µs.
async fn claims(
    store: &Arc<dyn Store>,
    duration: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<u64>> {
    let triggers = ["t".to_owned()];
    let until = Instant::now().checked_add(duration);
    let mut times = Vec::new();
    loop {
        if *stop.borrow_and_update() || until.is_some_and(|until| Instant::now() >= until) {
            return Ok(times);
        }
        let batch: Vec<NewEvent> = (0..ROUND)
            .map(|_| NewEvent {
                event: Event::new("new", "/new", "bench.new"),
                deliveries: vec![NewDelivery {
                    trigger: "t".to_owned(),
                    ordering_key: None,
                    claim: false,
                }],
            })
            .collect();
        store.append(&batch).await?;
        for _ in 0..ROUND {
            let asked = Instant::now();
            let claimed = store.claim(&triggers, 1, LEASE).await?;
            times.push(micros(asked.elapsed()));
            let Some(claimed) = claimed.first() else {
                bail!("a claim found no runnable delivery");
            };
            store
                .finish(&[Finished {
                    lease: claimed.lease,
                    attempt: claimed.attempt,
                    started_at: claimed.claimed_at,
                    duration_ms: 0,
                    outcome: AttemptOutcome::Succeeded,
                    retry_at: None,
                    error: None,
                    output: None,
                }])
                .await?;
        }
    }
}
