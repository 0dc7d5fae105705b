//! Records attempt results in batches: concurrent deliveries that finish together share
//! one fenced `finish` transaction.
//!
//! A delivery task hands its result over and ends; the completer, not the task, stops
//! tracking the lease once the result is recorded. So a batch of 256 results wakes no
//! task when it commits.
//!
//! While the store is unavailable a batch is retried until it commits: losing results
//! would rerun handlers that succeeded. A batch the store refuses for its values
//! ([`StoreError::Rejected`]) is never retried as it is: it is recorded in halves until
//! the refused results stand alone, and each of those is recorded with a plain error
//! text in place of its own. So one result can never hold up the others.

use std::sync::Arc;
use std::time::Duration;

use switchyard_store::{Finished, Store, StoreError};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::InFlight;

const MAX_BATCH: usize = 256;

/// A handle to the completer task. Cheap to clone.
#[derive(Clone)]
pub struct Completer {
    tx: mpsc::Sender<Submitted>,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Completer {
    /// Starts the task. `wake` is notified after each batch that recorded a result
    /// submitted with `wakes`, since a retried delivery is pending again and a finished
    /// ordered one may let the next of its key run. Each recorded (or refused) result's
    /// lease leaves `in_flight`, so heartbeats stop extending it.
    pub fn start(store: Arc<dyn Store>, wake: Arc<Notify>, in_flight: InFlight) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 2);
        let task = tokio::spawn(record(store, rx, wake, in_flight));
        Self {
            tx,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        }
    }

    /// Queues one result for recording, waiting while the queue is full. Once the
    /// completer has stopped the result is dropped and its lease stays in flight, to be
    /// released (or to expire) with the others.
    pub async fn submit(&self, finished: Finished, wakes: bool) {
        if self.tx.send(Submitted { finished, wakes }).await.is_err() {
            tracing::debug!("the completer has stopped; the delivery will be released");
        }
    }

    /// Waits until everything sent so far is recorded.
    pub async fn close(self) {
        let task = self.task.lock().expect("completer lock").take();
        drop(self.tx);
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "the completer task failed");
        }
    }
}

/// A result on its way to the store; `wakes` asks for the run loop to look for work
/// once it is recorded.
struct Submitted {
    finished: Finished,
    wakes: bool,
}

async fn record(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Submitted>,
    wake: Arc<Notify>,
    in_flight: InFlight,
) {
    let mut submitted = Vec::with_capacity(MAX_BATCH);
    let mut results = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut submitted, MAX_BATCH).await > 0 {
        let wakes = submitted.iter().any(|s| s.wakes);
        results.extend(submitted.drain(..).map(|s| s.finished));
        if let Err(error) = finish(&*store, &results).await {
            tracing::warn!(%error, results = results.len(), "the store refused a batch of results; recording it in parts to find the results at fault");
            finish_in_parts(&*store, &mut results).await;
        }
        if wakes {
            wake.notify_one();
        }
        in_flight.remove(results.drain(..).map(|result| result.lease));
    }
}

/// Records `results`, retrying with backoff while the store is unavailable. Fails only
/// when the store refuses their values. Which results were refused because their lease
/// was lost the store logs itself.
async fn finish(store: &dyn Store, results: &[Finished]) -> Result<(), StoreError> {
    let mut pause = Duration::from_millis(50);
    loop {
        match store.finish(results).await {
            Ok(_) => return Ok(()),
            Err(error @ StoreError::Rejected(_)) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, results = results.len(), retry_in = ?pause, "could not record results");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Records a batch the store refused, in parts (see
/// [`switchyard_store::split_refused`]). A result refused alone is recorded once more
/// with its error replaced by a text that says what happened; if even that is refused,
/// it is dropped, its lease runs out, and the delivery is reclaimed with an abandoned
/// attempt.
async fn finish_in_parts(store: &dyn Store, results: &mut [Finished]) {
    let parts = {
        let results = &*results;
        switchyard_store::split_refused(results.len(), |part| finish(store, &results[part])).await
    };
    for (part, recorded) in parts {
        let Err(error) = recorded else { continue };
        for result in &mut results[part] {
            tracing::warn!(%error, delivery = result.lease.delivery_id, "the store refused an attempt's result; recording it without its error text");
            result.error = Some(format!("the attempt's error could not be stored: {error}"));
            if let Err(error) = finish(store, std::slice::from_ref(result)).await {
                tracing::error!(%error, delivery = result.lease.delivery_id, "the store refused an attempt's result twice; its lease will run out and the delivery be reclaimed");
            }
        }
    }
}
