//! `latency`: one event at a time on an idle engine.
//!
//! For each sample: POST, then wait for the handler to start (it sends the instant it
//! started), then poll the store every millisecond until the delivery is recorded as
//! succeeded. The next sample starts only after that, so the engine is idle each time.
//! Reported: POST -> 202, POST -> handler start, and POST -> attempt recorded (the
//! last has 1 ms polling granularity, and the polling itself loads the store a little).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::Ctx;
use crate::backend::{Meter, Monitor};
use crate::harness::{Probe, Slots, start_engine};
use crate::http::Connection;
use crate::report::{Row, Summary, print_table};
use crate::stats::{Percentiles, micros, payload};

pub async fn run(ctx: &Ctx, summary: &mut Summary) -> Result<()> {
    let backend = &ctx.backend;
    let samples = ctx.args.samples;
    let db = backend.fresh("latency").await?;
    let result = async {
        let (probe, mut started_rx) = Probe::recording();
        let engine = start_engine(&db.url, 1, Slots::of(&ctx.args), &probe).await?;
        let monitor = Monitor::open(&db).await?;
        let mut connection = Connection::open(engine.local_addr(), "/bench").await?;
        // Warm the connection and the engine's pools before measuring.
        for seq in 0..20u64 {
            post(&mut connection, u64::MAX - seq).await?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        while started_rx.try_recv().is_ok() {}

        let meter = Meter::start(backend, &db, "latency").await?;
        let (mut acked, mut started, mut recorded) = (Vec::new(), Vec::new(), Vec::new());
        for seq in 0..u64::from(samples) {
            let sent = Instant::now();
            let id = post(&mut connection, seq).await?;
            acked.push(micros(sent.elapsed()));
            let at = loop {
                let (got, at) = tokio::time::timeout(Duration::from_secs(10), started_rx.recv())
                    .await
                    .context("the handler did not start within 10 s")?
                    .context("the engine stopped")?;
                if got == seq {
                    break at;
                }
            };
            started.push(micros(at.saturating_duration_since(sent)));
            loop {
                if monitor.event_done(id).await? {
                    break;
                }
                if sent.elapsed() > Duration::from_secs(10) {
                    bail!("event {id} not recorded as succeeded within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            recorded.push(micros(sent.elapsed()));
        }
        let stopped = meter.stop(backend).await?;
        drop(connection);
        engine.shutdown().await;
        let queries = monitor.queries();
        monitor.close().await;
        let usage = stopped.finish(backend, &db, queries).await;
        let n = u64::from(samples);
        let rate = n as f64 / usage.elapsed.as_secs_f64();
        let started = Percentiles::of(started);
        summary.latency = started;
        anyhow::Ok(vec![
            Row::new("POST -> 202 (committed)", n, "events", rate)
                .latency(Percentiles::of(acked))
                .usage(usage)
                .note("resource columns: whole run, incl. the harness's polling"),
            Row::new("POST -> handler start", n, "events", rate).latency(started),
            Row::new("POST -> attempt recorded", n, "events", rate)
                .latency(Percentiles::of(recorded))
                .note("polled every 1 ms"),
        ])
    }
    .await;
    backend.remove(db).await;
    let rows = result?;
    print_table(
        &format!(
            "latency ({}): one event at a time, idle engine",
            backend.label()
        ),
        "",
        &rows,
    );
    Ok(())
}

/// POSTs the payload for `seq`; returns the new event's id.
async fn post(connection: &mut Connection, seq: u64) -> Result<uuid::Uuid> {
    let response = connection.post(payload(seq).as_bytes()).await?;
    if response.status != 202 {
        bail!(
            "POST answered {}: {}",
            response.status,
            String::from_utf8_lossy(response.body)
        );
    }
    let body: serde_json::Value =
        serde_json::from_slice(response.body).context("the 202 body is not JSON")?;
    body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .context("no event id in the 202 body")
}
