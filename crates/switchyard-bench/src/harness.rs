//! The engine under test and the load generators shared by the workloads.
//!
//! Every workload runs the engine in this process with one HTTP source `bench` on
//! `/bench` and triggers `noop0..noopK` bound to the registered handler `noop`. The
//! handler does no work: it bumps a counter and, when a workload asks for it, sends
//! the event's sequence number with the instant it started into a channel.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use switchyard::config::{Config, ProcessEnv};
use switchyard::{Context, Engine, Event, RunningEngine, handler_fn};
use switchyard_store::{NewDelivery, NewEvent};
use tokio::sync::mpsc;

use crate::Args;
use crate::http::Connection;
use crate::stats::{self, micros};

/// What the `noop` handler reports.
#[derive(Default)]
pub struct Probe {
    handled: AtomicU64,
    recorder: Mutex<Option<mpsc::UnboundedSender<(u64, Instant)>>>,
}

impl Probe {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A probe that sends `(seq, handler start)` for every delivery it sees.
    pub fn recording() -> (Arc<Self>, mpsc::UnboundedReceiver<(u64, Instant)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Self {
            handled: AtomicU64::new(0),
            recorder: Mutex::new(Some(tx)),
        };
        (Arc::new(probe), rx)
    }

    /// Handler invocations so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    fn hit(&self, event: &Event) {
        let started = Instant::now();
        self.handled.fetch_add(1, Ordering::Relaxed);
        let recorder = self.recorder.lock().expect("probe lock");
        if let Some(tx) = recorder.as_ref()
            && let Some(seq) = seq_of(event)
        {
            let _ = tx.send((seq, started));
        }
    }
}

/// The payload's `seq`: at `data.seq` for seeded events, `data.body.seq` for events
/// that came in over HTTP.
fn seq_of(event: &Event) -> Option<u64> {
    let data = event.data.as_ref()?;
    data.get("seq")
        .or_else(|| data.get("body")?.get("seq"))?
        .as_u64()
}

/// The bench engine's slot settings (`--concurrency`, `--trigger-concurrency`,
/// `--prefetch`).
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub concurrency: u32,
    pub trigger_concurrency: u32,
    /// The engine's default when `None`.
    pub prefetch: Option<u32>,
}

impl Slots {
    pub fn of(args: &Args) -> Self {
        Self {
            concurrency: args.concurrency,
            trigger_concurrency: args.trigger_concurrency.unwrap_or(args.concurrency),
            prefetch: args.prefetch,
        }
    }
}

/// The YAML the bench engine runs: `triggers` no-op triggers on one HTTP source, with
/// the given slots in the dispatcher and on each trigger.
pub fn config_yaml(store: &str, triggers: u32, slots: Slots) -> String {
    let store = serde_json::to_string(store).expect("a string serializes");
    let prefetch = slots
        .prefetch
        .map_or_else(String::new, |n| format!(", prefetch: {n}"));
    let mut yaml = format!(
        "store: {store}\n\
         http: {{ listen: \"127.0.0.1:0\" }}\n\
         dispatcher: {{ concurrency: {}{prefetch} }}\n\
         sources:\n  bench: {{ http: {{ path: /bench }} }}\n\
         triggers:\n",
        slots.concurrency
    );
    if triggers == 0 {
        yaml.push_str("  {}\n");
    }
    for i in 0..triggers {
        yaml.push_str(&format!(
            "  noop{i}: {{ source: bench, handler: noop, concurrency: {} }}\n",
            slots.trigger_concurrency
        ));
    }
    yaml
}

/// Starts the engine on `store` with `triggers` no-op triggers reporting to `probe`.
pub async fn start_engine(
    store: &str,
    triggers: u32,
    slots: Slots,
    probe: &Arc<Probe>,
) -> Result<RunningEngine> {
    let config = Config::parse(&config_yaml(store, triggers, slots), &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("bench config: {e}"))?;
    let probe = probe.clone();
    let handler = handler_fn(move |_ctx: Context, event: Event| {
        probe.hit(&event);
        async { Ok(()) }
    });
    Engine::from_cli()
        .handler("noop", handler)
        .start(config)
        .await
        .context("starting the engine")
}

/// Appends `events` events, each with one delivery per trigger, straight into the
/// store (no engine, so no dispatcher), in transactions of `BATCH`.
pub async fn seed(store: &str, events: u64, triggers: u32) -> Result<()> {
    const BATCH: u64 = 1000;
    let db = switchyard_store::open(store).await?;
    db.migrate().await?;
    let deliveries: Vec<NewDelivery> = (0..triggers)
        .map(|i| NewDelivery {
            trigger: format!("noop{i}"),
            ordering_key: None,
            claim: false,
        })
        .collect();
    let mut seq = 0;
    while seq < events {
        let end = (seq + BATCH).min(events);
        let batch: Vec<NewEvent> = (seq..end)
            .map(|i| {
                let data: serde_json::Value =
                    serde_json::from_str(&stats::payload(i)).expect("payload is JSON");
                NewEvent {
                    event: Event::new("bench", "/bench", "http.request").with_json(data),
                    deliveries: deliveries.clone(),
                }
            })
            .collect();
        db.append(&batch).await?;
        seq = end;
    }
    Ok(())
}

/// Waits until the probe has seen `expected` deliveries and the store has none left
/// unfinished. Fails if nothing moves for `stall`.
pub async fn wait_drained(
    probe: &Probe,
    monitor: &crate::backend::Monitor,
    expected: u64,
    stall: Duration,
) -> Result<()> {
    let mut last = (probe.handled(), Instant::now());
    while probe.handled() < expected {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let handled = probe.handled();
        if handled != last.0 {
            last = (handled, Instant::now());
        } else if last.1.elapsed() > stall {
            bail!("stalled: {handled} of {expected} deliveries handled");
        }
    }
    let since = Instant::now();
    loop {
        if monitor.unfinished().await? == 0 {
            return Ok(());
        }
        if since.elapsed() > stall {
            bail!("handlers ran but results were not all recorded within {stall:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What a closed-loop run of POSTs came to.
pub struct Posted {
    pub accepted: u64,
    pub rejected: u64,
    pub errors: u64,
    /// Request latencies (send to full response), microseconds.
    pub latencies: Vec<u64>,
    /// From the first request sent to the last response received.
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

/// When a closed-loop run stops sending.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// After this long (requests in flight then are completed).
    Elapsed(Duration),
    /// After this many requests in all.
    Sent(u64),
}

/// `connections` tasks each POST the payload back to back on their own keep-alive
/// connection until `until`.
pub async fn closed_loop(addr: SocketAddr, connections: usize, until: Until) -> Result<Posted> {
    let start = Instant::now();
    let (deadline, budget) = match until {
        Until::Elapsed(duration) => (start + duration, u64::MAX),
        Until::Sent(count) => (start + Duration::from_secs(3600), count),
    };
    let budget = Arc::new(AtomicU64::new(budget));
    let mut tasks = Vec::with_capacity(connections);
    for worker in 0..connections {
        let budget = budget.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Posted {
                accepted: 0,
                rejected: 0,
                errors: 0,
                latencies: Vec::with_capacity(16 * 1024),
                elapsed: Duration::ZERO,
                first_error: None,
            };
            let mut connection = match Connection::open(addr, "/bench").await {
                Ok(connection) => connection,
                Err(error) => {
                    out.errors += 1;
                    out.first_error = Some(format!("{error:#}"));
                    return out;
                }
            };
            let mut seq = (worker as u64) << 40;
            while Instant::now() < deadline
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                seq += 1;
                let sent = Instant::now();
                match connection.post(stats::payload(seq).as_bytes()).await {
                    Ok(response) => {
                        out.latencies.push(micros(sent.elapsed()));
                        if response.status == 202 {
                            out.accepted += 1;
                        } else {
                            out.rejected += 1;
                            out.first_error.get_or_insert_with(|| {
                                format!(
                                    "{}: {}",
                                    response.status,
                                    String::from_utf8_lossy(response.body)
                                )
                            });
                        }
                    }
                    Err(error) => {
                        // The connection is in an unknown state: this worker stops.
                        out.errors += 1;
                        out.first_error.get_or_insert_with(|| format!("{error:#}"));
                        break;
                    }
                }
            }
            out
        }));
    }
    let mut total = Posted {
        accepted: 0,
        rejected: 0,
        errors: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
        first_error: None,
    };
    for task in tasks {
        let part = task.await?;
        total.accepted += part.accepted;
        total.rejected += part.rejected;
        total.errors += part.errors;
        total.latencies.extend(part.latencies);
        if total.first_error.is_none() {
            total.first_error = part.first_error;
        }
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_config_parses_and_validates() {
        let slots = Slots {
            concurrency: 512,
            trigger_concurrency: 16,
            prefetch: Some(0),
        };
        let yaml = config_yaml("postgres://postgres@127.0.0.1:5432/sy_bench_x", 4, slots);
        let config = Config::parse(&yaml, &ProcessEnv).unwrap();
        assert_eq!(config.triggers.len(), 4);
        assert_eq!(config.dispatcher.concurrency, 512);
        assert_eq!(config.dispatcher.prefetch, 0);
        assert_eq!(config.triggers["noop3"].concurrency, 16);
        assert_eq!(
            config.store,
            "postgres://postgres@127.0.0.1:5432/sy_bench_x"
        );
        config.validate(&|name| name == "noop").unwrap();
    }

    #[test]
    fn seq_is_found_in_seeded_and_http_events() {
        let data: serde_json::Value = serde_json::from_str(&stats::payload(7)).unwrap();
        let seeded = Event::new("bench", "/bench", "t").with_json(data.clone());
        assert_eq!(seq_of(&seeded), Some(7));
        let posted = Event::new("bench", "/bench", "t").with_json(serde_json::json!({
            "method": "POST", "body": data,
        }));
        assert_eq!(seq_of(&posted), Some(7));
    }
}
