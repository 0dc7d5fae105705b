//! `ingest`: how many webhook POSTs per second the engine makes durable.
//!
//! 64 keep-alive connections POST 256-byte JSON back to back for the run's duration;
//! every 202 means the event was committed. Afterwards the event log is counted and
//! must hold exactly the accepted events. Runs twice: with no trigger (the ingest path
//! alone, the figure docs/benchmarks.md judges against the target) and with one no-op
//! trigger, the dispatcher draining concurrently as it would in production (printed
//! against the same target beside it).

use anyhow::{Result, bail};

use crate::backend::{Backend, Meter, Monitor};
use crate::harness::{Probe, Slots, Until, closed_loop, start_engine};
use crate::report::{Row, Summary, print_table};
use crate::stats::{Percentiles, fmt_int};
use crate::{Args, Ctx};

async fn phase(backend: &Backend, args: &Args, triggers: u32) -> Result<(Row, bool)> {
    let db = backend.fresh("ingest").await?;
    let result = async {
        let probe = Probe::new();
        let engine = start_engine(&db.url, triggers, Slots::of(args), &probe).await?;
        let meter = Meter::start(backend, &db, &format!("ingest, {triggers} trigger(s)")).await?;
        let posted = closed_loop(
            engine.local_addr(),
            args.connections,
            Until::Elapsed(args.duration),
        )
        .await?;
        let stopped = meter.stop(backend).await?;
        let delivered = probe.handled();
        let monitor = Monitor::open(&db).await?;
        let logged = monitor.count_events().await?;
        engine.shutdown().await;
        let queries = monitor.queries();
        monitor.close().await;
        let usage = stopped.finish(backend, &db, queries).await;

        let consistent = u64::try_from(logged).ok() == Some(posted.accepted);
        println!(
            "ingest, {triggers} trigger(s): accepted {} (202), event log holds {} -> {}{}",
            fmt_int(posted.accepted as f64),
            fmt_int(logged as f64),
            if consistent { "equal" } else { "MISMATCH" },
            if posted.rejected + posted.errors > 0 {
                format!(
                    "; {} rejected, {} failed ({})",
                    posted.rejected,
                    posted.errors,
                    posted.first_error.as_deref().unwrap_or("")
                )
            } else {
                String::new()
            }
        );
        let mut note = format!("latency per request; log count == accepted: {consistent}");
        if triggers > 0 {
            note.push_str(&format!(
                "; {} deliveries ran during the window",
                fmt_int(delivered as f64)
            ));
        }
        let name = match triggers {
            0 => format!("no triggers, {} conns", args.connections),
            n => format!("{n} trigger, dispatcher on, {} conns", args.connections),
        };
        let row = Row::new(
            name,
            posted.accepted,
            "events",
            posted.accepted as f64 / posted.elapsed.as_secs_f64(),
        )
        .latency(Percentiles::of(posted.latencies))
        .usage(usage)
        .note(note);
        Ok((row, consistent))
    }
    .await;
    backend.remove(db).await;
    result
}

pub async fn run(ctx: &Ctx, summary: &mut Summary) -> Result<()> {
    let (pure, pure_ok) = phase(&ctx.backend, &ctx.args, 0).await?;
    summary.ingest_pure = Some((pure.rate, pure.latency.map_or(0, |p| p.p99)));
    let (real, real_ok) = phase(&ctx.backend, &ctx.args, 1).await?;
    summary.ingest = Some((real.rate, real.latency.map_or(0, |p| p.p99)));
    print_table(
        &format!("ingest ({}): HTTP POST -> durable 202", ctx.backend.label()),
        "per request",
        &[pure, real],
    );
    if !(pure_ok && real_ok) {
        bail!("the event log does not hold exactly the accepted events");
    }
    Ok(())
}
