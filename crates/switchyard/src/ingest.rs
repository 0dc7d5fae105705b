//! Ingress: routes events and commits them with their deliveries, in group commits.
//!
//! Sources call [`Ingest::submit`] and get the event id back only after the
//! transaction holding the event has committed. Concurrent submissions share
//! transactions: a writer task takes everything queued, appends it as one batch, and
//! answers each submitter. A few batches may be in flight at once so that one slow
//! fsync does not stall the next.
//!
//! When this process's dispatcher has free slots, the append also claims the new
//! deliveries for it and hands them over, so they start without a claim of their own
//! (see the dispatcher's `handoff` module).

use std::sync::Arc;

use switchyard_core::Event;
use switchyard_store::{Appended, NewEvent, Store, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::router::Router;

/// Largest batch one transaction takes.
const MAX_BATCH: usize = 512;

/// Why an event was not accepted. Nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the store could not commit the event: {0}")]
    Store(Arc<StoreError>),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

type Reply = oneshot::Sender<Result<Appended, Arc<StoreError>>>;

/// A handle for submitting events. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<(NewEvent, Reply)>,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
}

impl Ingest {
    /// Starts the writer. Deliveries go to `dispatcher` directly while it has free
    /// slots; `wake` is notified after every commit that left deliveries pending, so
    /// the local dispatcher claims them at once. `parallel` is how many batches may
    /// commit at the same time.
    pub fn start(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        dispatcher: Arc<Dispatcher>,
        wake: Arc<Notify>,
        parallel: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let writer = Writer {
            store,
            dispatcher,
            wake,
        };
        tokio::spawn(writer.run(rx, parallel));
        Self {
            tx,
            router,
            metrics,
        }
    }

    /// Routes and durably commits one event. Returns once the commit is done: the id
    /// of the new event, or of the original for a duplicate.
    ///
    /// Cancellation: if the caller stops waiting, the event may still be committed.
    pub async fn submit(&self, event: Event) -> Result<Appended, IngestError> {
        let source = event.source_name.clone();
        let deliveries = self.router.route(&event);
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((NewEvent { event, deliveries }, reply))
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        let appended = answer
            .await
            .map_err(|_| IngestError::ShuttingDown)?
            .map_err(IngestError::Store)?;
        if let Appended::Created(_) = appended {
            self.metrics.event_received(&source);
        }
        Ok(appended)
    }

    /// The router in use, for replay.
    pub fn router(&self) -> &Router {
        &self.router
    }
}

/// The task that commits batches.
#[derive(Clone)]
struct Writer {
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    wake: Arc<Notify>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<(NewEvent, Reply)>, parallel: usize) {
        let in_flight = Arc::new(Semaphore::new(parallel.max(1)));
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let mut batch = Vec::new();
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            let writer = self.clone();
            tokio::spawn(async move {
                let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.into_iter().unzip();
                writer.commit(events, replies).await;
                drop(permit);
            });
        }
    }

    /// Appends one batch, answers its submitters, and gets its deliveries started.
    async fn commit(&self, mut events: Vec<NewEvent>, replies: Vec<Reply>) {
        let reservation = self.dispatcher.reserve(&mut events);
        let appended = if reservation.is_empty() {
            self.store
                .append(&events)
                .await
                .map(|results| (results, Vec::new()))
        } else {
            self.store
                .append_claiming(&events, self.dispatcher.lease())
                .await
        };
        match appended {
            Ok((results, claimed)) => {
                let pending = events
                    .iter()
                    .flat_map(|item| &item.deliveries)
                    .any(|delivery| !delivery.claim);
                if pending {
                    self.wake.notify_one();
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    // The submitter may have gone away (client disconnected); the
                    // event is committed either way.
                    let _ = reply.send(Ok(result));
                }
                // Answer first: a handler must not get ahead of the acknowledgement
                // of its own event (one that takes the process down would lose it).
                self.dispatcher.hand_off(claimed, reservation).await;
            }
            Err(error) => {
                tracing::warn!(%error, events = events.len(), "could not commit events");
                let error = Arc::new(error);
                for reply in replies {
                    // As above: nobody waiting is not an error.
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
