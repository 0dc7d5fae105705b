//! Sources: adapters that turn the outside world into events.
//!
//! One module per kind. A source builds [`switchyard_core::Event`]s with a natural
//! dedupe key and commits them (through [`crate::ingest::Ingest`], or straight to the
//! store with [`SourceDeps`] when it commits state alongside), acknowledging upstream
//! only once they are committed.
//!
//! A kind is its module plus one line in [`kind`]: its configuration implements
//! [`SourceKind`] (build a configured source, shape a `switchyard send` event), and
//! what it builds implements [`Source`] (routes on the shared listener, or a task of
//! its own). The engine builds, serves and spawns every source through these traits;
//! `switchyard sources` asks each kind for a source's [`SourceKind::status`].

pub mod cron;
pub mod http;
pub mod s3;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use switchyard_core::Event;
use switchyard_core::config::{Config, SourceConfig};
use switchyard_store::{Appended, NewEvent, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::handler::S3Clients;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::router::Router;

/// The kind of a configured source, or `None` for a kind that is not built (its
/// configuration is refused by `validate`). Registering a kind is one arm here.
pub fn kind(config: &SourceConfig) -> Option<&dyn SourceKind> {
    match config {
        SourceConfig::Http(http) => Some(http),
        SourceConfig::Cron(cron) => Some(cron),
        SourceConfig::S3(s3) => Some(s3),
        SourceConfig::Postgres(_) => None,
    }
}

/// A kind of source, implemented by its configuration struct.
#[async_trait::async_trait]
pub trait SourceKind: Send + Sync {
    /// Builds the source `name` of this configuration, ready to serve or run, or `None`
    /// when it does not run (a disabled schedule). Makes no request: the engine
    /// builds every source before it starts any.
    async fn build(&self, name: &str, context: &mut BuildContext) -> Option<Arc<dyn Source>>;

    /// The types of the events its sources make, or `None` when they may make any
    /// (an HTTP source takes CloudEvents of any type); `switchyard events --type`
    /// checks a type against them.
    fn event_types(&self) -> Option<Vec<&'static str>>;

    /// The event the source `name` would make, for `switchyard send` and the test kit:
    /// its CloudEvents `source` and `type` (`ty`, else the kind's usual type) follow
    /// the kind, and `data` is the event's data in the shape triggers filter on.
    fn synthetic_event(
        &self,
        name: &str,
        ty: Option<String>,
        data: serde_json::Value,
    ) -> Result<Event, String>;

    /// The state of the source `name` as its configuration and `store` tell it, for
    /// `switchyard sources`: named fields in the order they are shown. Reads the store
    /// only; builds, starts and contacts nothing, so it works with no engine running.
    async fn status(&self, name: &str, store: &dyn Store) -> Result<StatusFields, StoreError>;
}

/// A source's state: `(field, value)` pairs in the order they are shown. A value is
/// `null` when there is nothing to show (no position stored yet).
pub type StatusFields = Vec<(&'static str, serde_json::Value)>;

/// One source as `switchyard sources` shows it: its name, its kind (the YAML key) and
/// its [`SourceKind::status`], which serializes as an object with the fields in order.
#[derive(Debug, Serialize)]
pub struct SourceState {
    pub source: String,
    pub kind: &'static str,
    #[serde(serialize_with = "ordered_fields")]
    pub state: StatusFields,
}

fn ordered_fields<S: serde::Serializer>(
    fields: &StatusFields,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(fields.iter().map(|(field, value)| (field, value)))
}

/// The state of every configured source, in name order. A kind that is not built has
/// no fields.
pub async fn states(config: &Config, store: &dyn Store) -> Result<Vec<SourceState>, StoreError> {
    let mut states = Vec::with_capacity(config.sources.len());
    for (name, source) in &config.sources {
        let state = match kind(source) {
            Some(kind) => kind.status(name, store).await?,
            None => Vec::new(),
        };
        states.push(SourceState {
            source: name.clone(),
            kind: source.kind(),
            state,
        });
    }
    Ok(states)
}

/// What building a source may add to the engine: clients handlers get too.
#[derive(Default)]
pub struct BuildContext {
    /// The S3 client of every `s3` source, which [`crate::Context::s3`] hands out.
    pub s3_clients: S3Clients,
}

/// A built source: it answers requests on the shared listener, runs a task of its
/// own, or both.
pub trait Source: Send + Sync {
    /// The routes it answers on the shared listener; `None` when it has none.
    fn routes(self: Arc<Self>, _listener: &ListenerContext) -> Option<axum::Router> {
        None
    }

    /// Its task, which the engine spawns once and which returns once `shutdown`
    /// fires; `None` when it has none.
    fn run(
        self: Arc<Self>,
        _deps: SourceDeps,
        _shutdown: CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// What a source's routes need: where to submit events and the listener's limits.
pub struct ListenerContext {
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    /// How long a request's whole body may take to arrive (`http.body_timeout`).
    pub body_timeout: Duration,
}

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

/// An event as `source` would label it, for `switchyard send` and the test kit; see
/// [`SourceKind::synthetic_event`]. A kind that is not built gets the CloudEvents
/// `source` `KIND://NAME` and the type `KIND.event`.
pub fn synthetic_event(
    config: &Config,
    source: &str,
    ty: Option<String>,
    data: serde_json::Value,
) -> Result<Event, String> {
    let Some(source_config) = config.sources.get(source) else {
        let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown source {source:?} (defined: {})",
            known.join(", ")
        ));
    };
    match kind(source_config) {
        Some(kind) => kind.synthetic_event(source, ty, data),
        None => {
            let kind = source_config.kind();
            Ok(Event::new(
                source,
                format!("{kind}://{source}"),
                ty.unwrap_or_else(|| format!("{kind}.event")),
            )
            .with_json(data))
        }
    }
}
