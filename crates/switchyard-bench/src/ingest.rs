//! `ingest`: how many webhook POSTs per second the engine makes durable.
//!
//! 64 keep-alive connections POST 256-byte JSON back to back for the run's duration,
//! from the harness's own client in this process (`--load builtin`) or from `wrk` in
//! a process of its own (`--load wrk`, see [`crate::wrk`]); every 202 means the event
//! was committed. Afterwards the event log is counted. With the builtin client it must
//! hold exactly the accepted events, and the figure is the accepted events over the
//! load's time. With wrk the log's count is the figure, over wrk's own duration, and
//! wrk's requests/s the cross-check: there must be no error status and no socket
//! error, and the log must hold at least wrk's responses and at most one more per
//! connection (the requests in flight when wrk stopped, which it abandons).
//!
//! Runs twice: with no trigger (the ingest path alone, the figure docs/benchmarks.md
//! judges against the target) and with one no-op trigger, the dispatcher draining
//! concurrently as it would in production (printed against the same target beside it).

use std::net::SocketAddr;

use anyhow::{Result, bail};

use crate::backend::{Backend, Meter, Monitor};
use crate::harness::{Posted, Probe, Slots, Until, closed_loop, start_engine};
use crate::report::{Row, Summary, print_table};
use crate::stats::{Percentiles, fmt_int};
use crate::{Args, Ctx, LoadGen, wrk};

/// What the load generator saw.
enum Sent {
    Builtin(Posted),
    Wrk(wrk::Report),
}

/// One ingest window, checked against the event log.
struct Measured {
    /// The events the figure counts.
    events: u64,
    /// Those events per second.
    rate: f64,
    latency: Option<Percentiles>,
    /// Whether the event log agrees with what the load generator saw.
    consistent: bool,
    /// What the table's notes say about the figure and its check.
    note: String,
}

/// Posts to the engine at `addr` for `--duration` from `--connections` connections.
async fn send(load: LoadGen, addr: SocketAddr, args: &Args) -> Result<Sent> {
    Ok(match load {
        LoadGen::Builtin => {
            Sent::Builtin(closed_loop(addr, args.connections, Until::Elapsed(args.duration)).await?)
        }
        LoadGen::Wrk => Sent::Wrk(wrk::run(addr, args.connections, args.duration).await?),
    })
}

impl Sent {
    /// Checks what was sent against the `logged` events, printing what it finds.
    fn check(self, logged: u64, connections: usize, phase: &str) -> Measured {
        match self {
            Self::Builtin(posted) => check_builtin(posted, logged, phase),
            Self::Wrk(report) => check_wrk(&report, logged, connections, phase),
        }
    }
}

/// The built-in client's 202s must equal the event log; they are the figure.
fn check_builtin(posted: Posted, logged: u64, phase: &str) -> Measured {
    let consistent = logged == posted.accepted;
    println!(
        "{phase}: accepted {} (202), event log holds {} -> {}{}",
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
    Measured {
        events: posted.accepted,
        rate: posted.accepted as f64 / posted.elapsed.as_secs_f64(),
        latency: Percentiles::of(posted.latencies),
        consistent,
        note: format!("latency per request; log count == accepted: {consistent}"),
    }
}

/// The event log is the figure, over wrk's duration; wrk's own counts must agree with
/// it, less the requests it abandoned in flight, and show no error.
fn check_wrk(report: &wrk::Report, logged: u64, connections: usize, phase: &str) -> Measured {
    let in_flight = connections as u64;
    let consistent = report.non_2xx == 0
        && report.socket_errors == 0
        && (report.requests..=report.requests + in_flight).contains(&logged);
    let rate = logged as f64 / report.duration.as_secs_f64();
    println!("{phase}, wrk's report:\n{}", report.text);
    println!(
        "{phase}: event log holds {} in wrk's {:.2} s = {}/s; wrk: {} responses = {}/s, \
         {} non-2xx, {} socket errors -> {}",
        fmt_int(logged as f64),
        report.duration.as_secs_f64(),
        fmt_int(rate),
        fmt_int(report.requests as f64),
        fmt_int(report.requests_per_second()),
        report.non_2xx,
        report.socket_errors,
        if consistent {
            "consistent"
        } else {
            "MISMATCH (the log must hold wrk's responses plus at most one per connection, \
             with no error)"
        }
    );
    Measured {
        events: logged,
        rate,
        latency: Some(report.latency),
        consistent,
        note: format!(
            "wrk's latency per request; rate = event log / wrk's duration; wrk {}/s, \
             {} non-2xx; CPU s/1k includes wrk; log consistent: {consistent}",
            fmt_int(report.requests_per_second()),
            report.non_2xx
        ),
    }
}

/// One ingest run on a fresh database and engine with `triggers` no-op triggers.
async fn phase(
    backend: &Backend,
    args: &Args,
    load: LoadGen,
    triggers: u32,
) -> Result<(Row, bool)> {
    let db = backend.fresh("ingest").await?;
    let result = async {
        let label = format!("ingest, {triggers} trigger(s)");
        let probe = Probe::new();
        let engine = start_engine(&db.url, triggers, Slots::of(args), &probe).await?;
        let meter = Meter::start(backend, &db, &label).await?;
        let sent = send(load, engine.local_addr(), args).await?;
        let stopped = meter.stop(backend).await?;
        let delivered = probe.handled();
        let monitor = Monitor::open(&db).await?;
        let logged = u64::try_from(monitor.count_events().await?)?;
        engine.shutdown().await;
        let queries = monitor.queries();
        monitor.close().await;
        let usage = stopped.finish(backend, &db, queries).await;

        let measured = sent.check(logged, args.connections, &label);
        let mut note = measured.note;
        if triggers > 0 {
            note.push_str(&format!(
                "; {} deliveries ran during the window",
                fmt_int(delivered as f64)
            ));
        }
        let conns = format!("{} conns, {}", args.connections, load.label());
        let name = match triggers {
            0 => format!("no triggers, {conns}"),
            n => format!("{n} trigger, dispatcher on, {conns}"),
        };
        let row = Row::new(name, measured.events, "events", measured.rate)
            .latency(measured.latency)
            .usage(usage)
            .note(note);
        Ok((row, measured.consistent))
    }
    .await;
    backend.remove(db).await;
    result
}

pub async fn run(ctx: &Ctx, summary: &mut Summary) -> Result<()> {
    summary.ingest_load = ctx.load;
    let (pure, pure_ok) = phase(&ctx.backend, &ctx.args, ctx.load, 0).await?;
    summary.ingest_pure = Some((pure.rate, pure.latency.map_or(0, |p| p.p99)));
    let (real, real_ok) = phase(&ctx.backend, &ctx.args, ctx.load, 1).await?;
    summary.ingest = Some((real.rate, real.latency.map_or(0, |p| p.p99)));
    print_table(
        &format!(
            "ingest ({}, {}): HTTP POST -> durable 202",
            ctx.backend.label(),
            ctx.load.label()
        ),
        "per request",
        &[pure, real],
    );
    if !(pure_ok && real_ok) {
        bail!("the event log does not agree with what the load generator saw");
    }
    Ok(())
}
