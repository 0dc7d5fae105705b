//! `drain`: how fast the dispatcher empties a backlog.
//!
//! N events (each with one delivery to the no-op trigger) are appended straight into
//! the store in batches while no engine runs. Then the clock starts, the engine starts,
//! and the run ends when the store has no unfinished delivery left. With
//! `--peer graphile`, graphile-worker drains the same number of no-op jobs on the same
//! server (its own script, its own fresh database) for comparison.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::backend::{Meter, Monitor};
use crate::harness::{Probe, Slots, seed, start_engine, wait_drained};
use crate::report::{Row, Summary, print_table};
use crate::{Ctx, Peer};

pub async fn run(ctx: &Ctx, summary: &mut Summary) -> Result<()> {
    let backend = &ctx.backend;
    let events = ctx.args.events;
    let db = backend.fresh("drain").await?;
    let result = async {
        seed(&db.url, events, 1).await.context("seeding")?;
        backend.settle(&db).await;
        let probe = Probe::new();
        let monitor = Monitor::open(&db).await?;
        let analyzed = monitor.deliveries_analyzed().await?;
        let meter = Meter::start(backend, &db, "drain").await?;
        let engine = start_engine(&db.url, 1, Slots::of(&ctx.args), &probe).await?;
        wait_drained(&probe, &monitor, events, Duration::from_secs(30)).await?;
        let stopped = meter.stop(backend).await?;
        engine.shutdown().await;
        let queries = monitor.queries();
        monitor.close().await;
        let usage = stopped.finish(backend, &db, queries).await;
        anyhow::Ok(
            Row::new(
                "switchyard",
                events,
                "deliveries",
                events as f64 / usage.elapsed.as_secs_f64(),
            )
            .usage(usage)
            .note(format!(
                "clock includes engine start{}",
                match analyzed {
                    Some((_, false)) => "; deliveries NOT analyzed before the drain".to_owned(),
                    Some((changed, true)) => format!(
                        "; deliveries analyzed before the drain ({changed} rows changed since)"
                    ),
                    None => String::new(),
                }
            )),
        )
    }
    .await;
    backend.remove(db).await;
    let row = result?;
    summary.drain = Some(row.rate);
    let mut rows = vec![row];

    let peer = match ctx.args.peer {
        Some(Peer::Graphile) if backend.is_postgres() => true,
        Some(Peer::Graphile) => {
            println!("drain: graphile-worker needs Postgres; skipped on SQLite");
            false
        }
        _ => false,
    };
    if peer {
        let db = backend.fresh("graphile").await?;
        let result = graphile(&ctx.args.peer_dir, &db.url, events).await;
        backend.remove(db).await;
        match result {
            Ok((rate, line)) => {
                println!("peer: {line}");
                summary.graphile = Some(rate);
                rows.push(
                    Row::new("graphile-worker 0.17.3", events, "jobs", rate).note(
                        "its own script and clock; batching on; resource columns not measured",
                    ),
                );
            }
            Err(error) => println!("peer graphile-worker failed: {error:#}"),
        }
    }
    print_table(
        &format!("drain ({}): empty a seeded backlog", backend.label()),
        "",
        &rows,
    );
    Ok(())
}

/// Runs the peer's `drain.sh` on a database of its own; returns its rate and line.
async fn graphile(dir: &Path, url: &str, events: u64) -> Result<(f64, String)> {
    let script = dir.join("drain.sh");
    if !script.is_file() {
        bail!("{} not found (set --peer-dir)", script.display());
    }
    let output = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new("bash")
            .arg(&script)
            .arg(events.to_string())
            .env("DATABASE_URL", url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("graphile-worker took over 15 minutes")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "drain.sh exited with {}: {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.contains("jobs/s"))
        .with_context(|| format!("no rate in drain.sh output: {stdout}"))?;
    let rate = parse_rate(line).with_context(|| format!("cannot read the rate in {line:?}"))?;
    Ok((rate, line.to_owned()))
}

/// The `R` of `... = R jobs/s ...`.
fn parse_rate(line: &str) -> Option<f64> {
    let before = line.split(" jobs/s").next()?;
    before.rsplit("= ").next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn reads_the_peer_rate() {
        let line =
            "graphile-worker drain: 50000 jobs in 4.21 s = 11876 jobs/s (left 0, batching=on)";
        assert_eq!(parse_rate(line), Some(11876.0));
        assert_eq!(parse_rate("nothing here"), None);
    }
}
