//! `fanout`: end-to-end deliveries per second when each event goes to 1, 4 or 16
//! triggers.
//!
//! For each fan-out K: a fresh engine with K no-op triggers; 64 connections POST
//! `--fanout-deliveries / K` events (closed loop, as `ingest`), so every K makes the
//! same number of deliveries; the clock runs from the first POST until every delivery
//! of every accepted event has succeeded. Deliveries/s = accepted × K over that time:
//! ingest and dispatch together, as a user sees them. Per-unit columns are per
//! delivery.

use std::time::Duration;

use anyhow::Result;

use crate::Ctx;
use crate::backend::{Meter, Monitor};
use crate::harness::{Probe, Slots, Until, closed_loop, start_engine, wait_drained};
use crate::report::{Row, Summary, print_table};
use crate::stats::{Percentiles, fmt_int};

pub async fn run(ctx: &Ctx, summary: &mut Summary) -> Result<()> {
    let backend = &ctx.backend;
    let mut rows = Vec::new();
    for &k in &ctx.args.fanouts {
        let db = backend.fresh("fanout").await?;
        let result = async {
            let probe = Probe::new();
            let engine = start_engine(&db.url, k, Slots::of(&ctx.args), &probe).await?;
            let monitor = Monitor::open(&db).await?;
            let meter = Meter::start(backend, &db, &format!("fanout {k}")).await?;
            let events = ctx.args.fanout_deliveries.div_ceil(u64::from(k.max(1)));
            let posted = closed_loop(
                engine.local_addr(),
                ctx.args.connections,
                Until::Sent(events),
            )
            .await?;
            let deliveries = posted.accepted * u64::from(k);
            wait_drained(&probe, &monitor, deliveries, Duration::from_secs(30)).await?;
            let stopped = meter.stop(backend).await?;
            engine.shutdown().await;
            let queries = monitor.queries();
            monitor.close().await;
            let usage = stopped.finish(backend, &db, queries).await;
            let rate = deliveries as f64 / usage.elapsed.as_secs_f64();
            anyhow::Ok(
                Row::new(format!("fanout {k}"), deliveries, "deliveries", rate)
                    .latency(Percentiles::of(posted.latencies))
                    .usage(usage)
                    .note(format!(
                        "{} events ({}/s over the POST window); drained {:.1} s after it",
                        fmt_int(posted.accepted as f64),
                        fmt_int(posted.accepted as f64 / posted.elapsed.as_secs_f64()),
                        (usage.elapsed.saturating_sub(posted.elapsed)).as_secs_f64()
                    )),
            )
        }
        .await;
        backend.remove(db).await;
        let row = result?;
        summary.fanout.push((k, row.rate));
        rows.push(row);
    }
    print_table(
        &format!(
            "fanout ({}): POST {} deliveries' worth of events, until every delivery succeeded",
            backend.label(),
            fmt_int(ctx.args.fanout_deliveries as f64)
        ),
        "POST",
        &rows,
    );
    Ok(())
}
