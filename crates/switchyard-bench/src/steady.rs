//! `steady`: open-loop load at fixed rates, latency from the scheduled send time.
//!
//! For each rate R (ascending): event i is due at `start + i/R`. The producer sends
//! each request at its due time on its own task, whatever happened to earlier ones
//! (up to 2,048 in flight; beyond that it waits, and the wait counts as latency), so a
//! slow engine cannot slow the producer down and hide its own delay (no coordinated
//! omission). Latency is due time -> handler start. A rate passes when its p99 is at
//! most 100 ms, no request failed and every event reached its handler within 5 s of
//! the last send. Queue depth (accepted minus handled) is sampled every 10 ms. The
//! run stops at the first rate that does not pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::{Semaphore, oneshot};

use crate::backend::{Backend, Meter};
use crate::harness::{Probe, Slots, start_engine};
use crate::http::Pool;
use crate::report::{Row, Summary, print_table};
use crate::stats::{NEVER, Percentiles, fmt_int, micros, payload};
use crate::{Args, Ctx};

const MAX_IN_FLIGHT: usize = 2048;
const P99_LIMIT_US: u64 = 100_000;

struct Outcome {
    row: Row,
    passed: bool,
    p99: u64,
}

async fn at_rate(backend: &Backend, args: &Args, rate: u32) -> Result<Outcome> {
    let db = backend.fresh("steady").await?;
    let result = async {
        let (probe, mut started_rx) = Probe::recording();
        let engine = start_engine(&db.url, 1, Slots::of(args), &probe).await?;
        let pool = Arc::new(Pool::new(engine.local_addr(), "/bench"));
        let total = (f64::from(rate) * args.duration.as_secs_f64()).round() as u64;
        let interval_ns = 1e9 / f64::from(rate);
        let base = Instant::now() + Duration::from_millis(50);
        let due = move |seq: u64| base + Duration::from_nanos((seq as f64 * interval_ns) as u64);

        // Handler start instants, matched to their due times.
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let collector = tokio::spawn(async move {
            let mut latencies = vec![NEVER; usize::try_from(total).unwrap_or(usize::MAX)];
            loop {
                tokio::select! {
                    message = started_rx.recv() => match message {
                        Some((seq, at)) => {
                            if let Some(slot) = usize::try_from(seq).ok().and_then(|i| latencies.get_mut(i)) {
                                *slot = micros(at.saturating_duration_since(due(seq)));
                            }
                        }
                        None => break,
                    },
                    _ = &mut stop_rx => break,
                }
            }
            latencies
        });

        let accepted = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let sending = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (accepted, probe, sending) = (accepted.clone(), probe.clone(), sending.clone());
            tokio::spawn(async move {
                let mut max_depth = 0u64;
                while sending.load(Ordering::Relaxed) {
                    let depth = accepted
                        .load(Ordering::Relaxed)
                        .saturating_sub(probe.handled());
                    max_depth = max_depth.max(depth);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                max_depth
            })
        };

        let meter = Meter::start(backend, &db, &format!("steady {rate}/s")).await?;
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut first_error: Option<String> = None;
        let (error_tx, mut error_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for seq in 0..total {
            tokio::time::sleep_until(due(seq).into()).await;
            let permit = in_flight.clone().acquire_owned().await?;
            let (pool, accepted, failed, error_tx) = (
                pool.clone(),
                accepted.clone(),
                failed.clone(),
                error_tx.clone(),
            );
            tokio::spawn(async move {
                let ok = match pool.post(payload(seq).as_bytes()).await {
                    Ok(202) => Ok(()),
                    Ok(status) => Err(format!("status {status}")),
                    Err(error) => Err(format!("{error:#}")),
                };
                match ok {
                    Ok(()) => accepted.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        let _ = error_tx.send(error);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                drop(permit);
            });
        }
        let last_due = due(total.saturating_sub(1));
        let lag = micros(Instant::now().saturating_duration_since(last_due));
        let _all = in_flight
            .acquire_many(u32::try_from(MAX_IN_FLIGHT).expect("small"))
            .await?;
        let depth_at_end = accepted
            .load(Ordering::Relaxed)
            .saturating_sub(probe.handled());
        sending.store(false, Ordering::Relaxed);
        let max_depth = sampler.await?;
        let grace = Instant::now() + Duration::from_secs(5);
        while probe.handled() < accepted.load(Ordering::Relaxed) && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Let the last handler-start messages arrive before stopping the collector.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = stop_tx.send(());
        let latencies = collector.await?;
        let stopped = meter.stop(backend).await?;
        drop(pool);
        engine.shutdown().await;
        let usage = stopped.finish(backend, &db, 0).await;
        while let Ok(error) = error_rx.try_recv() {
            first_error.get_or_insert(error);
        }

        let accepted = accepted.load(Ordering::Relaxed);
        let failed = failed.load(Ordering::Relaxed);
        let unhandled = latencies.iter().filter(|&&l| l == NEVER).count();
        let percentiles = Percentiles::of(latencies);
        let p99 = percentiles.map_or(NEVER, |p| p.p99);
        let passed = p99 <= P99_LIMIT_US && failed == 0 && unhandled == 0;
        let mut note = format!(
            "{}; max depth {}, at end of sending {}; producer lag at last send {} ms",
            if passed { "PASS" } else { "over" },
            fmt_int(max_depth as f64),
            fmt_int(depth_at_end as f64),
            lag / 1000
        );
        if failed > 0 || unhandled > 0 {
            note.push_str(&format!(
                "; {failed} failed, {unhandled} never handled{}",
                first_error.map(|e| format!(" ({e})")).unwrap_or_default()
            ));
        }
        anyhow::Ok(Outcome {
            row: Row::new(format!("{rate}/s"), accepted, "events", accepted as f64 / args.duration.as_secs_f64())
                .latency(percentiles)
                .usage(usage)
                .note(note),
            passed,
            p99,
        })
    }
    .await;
    backend.remove(db).await;
    result
}

pub async fn run(ctx: &Ctx, summary: &mut Summary) -> Result<()> {
    let mut rates = ctx.args.rates.clone();
    rates.sort_unstable();
    let mut rows = Vec::new();
    for rate in rates {
        let outcome = at_rate(&ctx.backend, &ctx.args, rate).await?;
        summary
            .steady_tried
            .push((rate, outcome.passed, outcome.p99));
        rows.push(outcome.row);
        if outcome.passed {
            summary.steady_best = Some(rate);
        } else {
            break;
        }
    }
    print_table(
        &format!(
            "steady ({}): open loop, due time -> handler start, {:?} per rate",
            ctx.backend.label(),
            ctx.args.duration
        ),
        "",
        &rows,
    );
    Ok(())
}
