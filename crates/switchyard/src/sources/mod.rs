//! Sources: adapters that turn the outside world into events.
//!
//! One module per kind. A source builds [`switchyard_core::Event`]s with a natural
//! dedupe key and commits them (through [`crate::ingest::Ingest`], or straight to the
//! store with [`SourceDeps`] when it commits state alongside), acknowledging upstream
//! only once they are committed.

pub mod cron;
pub mod http;
pub mod s3;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::Event;
use switchyard_core::config::{Config, SourceConfig};
use switchyard_store::{Appended, NewEvent, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::router::Router;

/// What a source task that commits to the store itself needs from the engine.
pub struct SourceDeps {
    pub store: Arc<dyn Store>,
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    /// Notified when new deliveries were committed, so the local dispatcher starts.
    pub wake: Arc<Notify>,
}

impl SourceDeps {
    /// `event` with the deliveries routing gives it.
    pub fn route(&self, event: Event) -> NewEvent {
        let deliveries = self.router.route(&event);
        NewEvent { event, deliveries }
    }

    /// Counts the events of `batch` that were created (not duplicates) and wakes the
    /// dispatcher if they brought deliveries. `results` is what the store returned.
    pub fn committed(&self, source: &str, batch: &[NewEvent], results: &[Appended]) {
        let mut wake = false;
        for (new, appended) in batch.iter().zip(results) {
            if let Appended::Created(_) = appended {
                self.metrics.event_received(source);
                wake |= !new.deliveries.is_empty();
            }
        }
        if wake {
            self.wake.notify_one();
        }
    }
}

/// Retries a store call with backoff (100 ms doubling to 5 s) until it succeeds;
/// `None` once `shutdown` fires. `what` completes "could not ..." in the log.
pub async fn retry<T, F, Fut>(
    shutdown: &CancellationToken,
    source: &str,
    what: &str,
    call: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    retry_while(shutdown, source, what, call, |_| true)
        .await
        .map(|result| result.expect("every error is retried"))
}

/// Retries a store call with backoff while it fails with an error `retryable` accepts;
/// returns its success or the first error it does not accept, or `None` once
/// `shutdown` fires.
async fn retry_while<T, F, Fut>(
    shutdown: &CancellationToken,
    source: &str,
    what: &str,
    mut call: F,
    retryable: impl Fn(&StoreError) -> bool,
) -> Option<Result<T, StoreError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(error) if retryable(&error) => {
                tracing::warn!(%source, %error, retry_in = ?pause, "could not {what}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return None,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            result => return Some(result),
        }
    }
}

/// Whether a store error may pass: anything but a refusal of the values themselves.
fn may_pass(error: &StoreError) -> bool {
    !matches!(error, StoreError::Rejected(_))
}

/// An event of a batch that the store refused to hold, with the store's reason.
pub struct Refused {
    /// Its position in the batch.
    pub index: usize,
    pub reason: String,
}

impl SourceDeps {
    /// Commits `batch` with `commit` (an append of the whole batch, perhaps with the
    /// source's position), retrying while the store is unavailable; `None` once
    /// `shutdown` fires. If the store refuses some events' values, those never block
    /// the source: the rest commit in parts with plain appends (see
    /// [`switchyard_store::split_refused`]), and the refused ones are returned for the
    /// source to quarantine. Counts and wakes like [`committed`](Self::committed).
    pub async fn commit<F, Fut>(
        &self,
        source: &str,
        batch: &[NewEvent],
        shutdown: &CancellationToken,
        commit: F,
    ) -> Option<Vec<Refused>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Vec<Appended>, StoreError>>,
    {
        let error = match retry_while(shutdown, source, "commit events", commit, may_pass).await? {
            Ok(results) => {
                self.committed(source, batch, &results);
                return Some(Vec::new());
            }
            Err(error) => error,
        };
        tracing::warn!(%source, %error, events = batch.len(), "the store refused a batch; committing it in parts to find the events at fault");
        let mut refused = Vec::new();
        let parts = switchyard_store::split_refused(batch.len(), |part| async move {
            let append = || self.store.append(&batch[part.clone()]);
            retry_while(shutdown, source, "commit events", append, may_pass)
                .await
                .unwrap_or_else(|| Err(StoreError::Invalid("shutting down".to_owned())))
        })
        .await;
        if shutdown.is_cancelled() {
            // What was not committed comes back when the source reads its input again.
            return None;
        }
        for (part, result) in parts {
            match result {
                Ok(results) => self.committed(source, &batch[part], &results),
                Err(error) => refused.extend(part.map(|index| Refused {
                    index,
                    reason: format!("the event log refused the event: {error}"),
                })),
            }
        }
        Some(refused)
    }
}

/// An event as `source` would label it, for `switchyard send` and the test kit: its
/// CloudEvents `source` and default `type` follow the source's kind, and `data` is
/// used as it is (an HTTP source would wrap a request body in `{"body": ...}`, so a
/// test that filters on `data.body.*` passes data of that shape).
///
/// A cron source makes the tick its schedule would fire now ([`cron::CronRuntime::tick`]),
/// whose `data.payload` is `data` unless that is `{}` (then the configured payload, if
/// any), and with no dedupe key: the scheduled fire of the same time still happens.
pub fn synthetic_event(
    config: &Config,
    source: &str,
    ty: Option<String>,
    data: serde_json::Value,
) -> Result<Event, String> {
    let Some(kind) = config.sources.get(source) else {
        let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown source {source:?} (defined: {})",
            known.join(", ")
        ));
    };
    if let SourceConfig::Cron(cron) = kind {
        let runtime = cron::CronRuntime {
            name: source.to_owned(),
            config: cron.clone(),
            schedule: switchyard_core::schedule::Schedule::parse(&cron.schedule, &cron.timezone)
                .map_err(|error| format!("source {source:?}: {error}"))?,
        };
        let now = chrono::Utc::now();
        let mut tick = runtime.tick(now, now);
        tick.dedupe_key = None;
        if data != serde_json::json!({})
            && let Some(fields) = tick.data.as_mut()
        {
            fields["payload"] = data;
        }
        if let Some(ty) = ty {
            tick.ty = ty;
        }
        return Ok(tick);
    }
    let (ce_source, default_type) = match kind {
        SourceConfig::Http(http) => (http.path.clone(), http.ty.clone()),
        SourceConfig::S3(s3) => (
            format!("s3://{}", s3.bucket),
            switchyard_core::config::ObjectChange::Created
                .event_type()
                .to_owned(),
        ),
        other => (
            format!("{}://{source}", other.kind()),
            format!("{}.event", other.kind()),
        ),
    };
    Ok(Event::new(source, ce_source, ty.unwrap_or(default_type)).with_json(data))
}
