//! Ingress: routes events and commits them with their deliveries, in group commits.
//!
//! Sources call [`Ingest::submit`] and get the event id back only after the
//! transaction holding the event has committed. Concurrent submissions share
//! transactions: a writer task takes everything queued, appends it as one batch, and
//! answers each submitter. It commits one batch at a time, so that what arrives while
//! a commit waits for its WAL flush goes into the next batch whole. Every transaction
//! costs the database CPU whatever its size, and under load larger batches win: on 2
//! cores with 64 clients, one batch at a time committed about 33 events per
//! transaction against 17 with two at a time, at 0.016 against 0.022 ms of Postgres
//! CPU per event and 5% more events per second (three at a time was 10% slower
//! still); see docs/benchmarks.md.
//!
//! When this process's dispatcher has free slots, the append also claims the new
//! deliveries for it and hands them over, so they start without a claim of their own
//! (see the dispatcher's `handoff` module).
//!
//! One submitter's bad input never fails its neighbours: an event the store could not
//! hold is refused before it joins a batch ([`Event::check_storable`]), and if the
//! store still refuses a batch's values ([`StoreError::Rejected`]), the batch is split
//! and retried in halves until the refused events stand alone and fail alone.

use std::sync::Arc;

use switchyard_core::Event;
use switchyard_core::envelope::Unstorable;
use switchyard_store::{Appended, NewEvent, Store, StoreError};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::router::Router;

/// Largest batch one transaction takes.
const MAX_BATCH: usize = 512;

/// Why an event was not accepted. Nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The event holds text the event log cannot store; sending it again fails again.
    #[error(transparent)]
    Unstorable(#[from] Unstorable),
    #[error("the store could not commit the event: {0}")]
    Store(Arc<StoreError>),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

impl IngestError {
    /// Whether the event itself is at fault, so that sending it again cannot succeed
    /// (HTTP answers 400), as opposed to the store or the engine (503, try again).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::Unstorable(_) => true,
            Self::Store(error) => matches!(**error, StoreError::Rejected(_)),
            Self::ShuttingDown => false,
        }
    }
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
    /// the local dispatcher claims them at once.
    pub fn start(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        dispatcher: Arc<Dispatcher>,
        wake: Arc<Notify>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let writer = Writer {
            store,
            dispatcher,
            wake,
        };
        tokio::spawn(writer.run(rx));
        Self {
            tx,
            router,
            metrics,
        }
    }

    /// Routes and durably commits one event. Returns once the commit is done: the id
    /// of the new event, or of the original for a duplicate. An event that cannot be
    /// stored is refused at once, before it joins a batch.
    ///
    /// Cancellation: if the caller stops waiting, the event may still be committed.
    pub async fn submit(&self, event: Event) -> Result<Appended, IngestError> {
        event.check_storable()?;
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
struct Writer {
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    wake: Arc<Notify>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<(NewEvent, Reply)>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.drain(..).unzip();
            self.commit(events, replies).await;
        }
    }

    /// Appends one batch, answers its submitters, and gets its deliveries started.
    async fn commit(&self, mut events: Vec<NewEvent>, replies: Vec<Reply>) {
        let reservation = self.dispatcher.reserve(&mut events);
        let sent = Instant::now();
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
                self.dispatcher.hand_off(claimed, reservation, sent).await;
            }
            Err(StoreError::Rejected(error)) if events.len() > 1 => {
                tracing::warn!(%error, events = events.len(), "the store refused a batch; committing it in parts to find the events at fault");
                // The parts commit without claims; their deliveries go through the queue.
                drop(reservation);
                for delivery in events.iter_mut().flat_map(|item| &mut item.deliveries) {
                    delivery.claim = false;
                }
                let results = self.commit_in_parts(&events).await;
                let created_deliveries = events.iter().zip(&results).any(|(item, result)| {
                    matches!(result, Ok(Appended::Created(_))) && !item.deliveries.is_empty()
                });
                if created_deliveries {
                    self.wake.notify_one();
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    // As above: nobody waiting is not an error.
                    let _ = reply.send(result);
                }
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

    /// Commits a batch the store refused as a whole in parts (see
    /// [`switchyard_store::split_refused`]), so that only the events it refuses fail.
    /// Parts commit in batch order, so a dedupe key repeated within the batch still
    /// names its first occurrence.
    async fn commit_in_parts(&self, events: &[NewEvent]) -> Vec<Result<Appended, Arc<StoreError>>> {
        let parts =
            switchyard_store::split_refused(events.len(), |part| self.store.append(&events[part]))
                .await;
        let mut results = Vec::with_capacity(events.len());
        for (part, result) in parts {
            match result {
                Ok(appended) => results.extend(appended.into_iter().map(Ok)),
                Err(error) => {
                    tracing::warn!(%error, events = part.len(), "could not commit events");
                    let error = Arc::new(error);
                    results.extend(part.map(|_| Err(error.clone())));
                }
            }
        }
        results
    }
}
