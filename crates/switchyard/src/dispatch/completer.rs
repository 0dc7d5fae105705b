//! Records attempt results in batches: concurrent deliveries that finish together share
//! one fenced `finish` transaction.

use std::sync::Arc;
use std::time::Duration;

use switchyard_store::{Finished, Store};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

const MAX_BATCH: usize = 256;

/// A result queued by [`Completer::submit`], not yet known to be recorded.
pub struct Pending(Option<oneshot::Receiver<bool>>);

impl Pending {
    /// Whether the store accepted the result.
    pub async fn recorded(self) -> bool {
        match self.0 {
            Some(answer) => answer.await.unwrap_or(false),
            None => false,
        }
    }
}

/// A handle to the completer task. Cheap to clone.
#[derive(Clone)]
pub struct Completer {
    tx: mpsc::Sender<(Finished, oneshot::Sender<bool>)>,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Completer {
    /// Starts the task. `wake` is notified after each batch, since a finished ordered
    /// delivery may unblock the next one of its key.
    pub fn start(store: Arc<dyn Store>, wake: Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 2);
        let task = tokio::spawn(record(store, rx, wake));
        Self {
            tx,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        }
    }

    /// Queues one result for recording, waiting while the queue is full. The returned
    /// [`Pending`] resolves to `true` once committed, `false` if the lease was lost (or
    /// the completer stopped first, in which case the lease expires and the delivery
    /// runs again).
    pub async fn submit(&self, finished: Finished) -> Pending {
        let (reply, answer) = oneshot::channel();
        match self.tx.send((finished, reply)).await {
            Ok(()) => Pending(Some(answer)),
            Err(_) => Pending(None),
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

async fn record(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<(Finished, oneshot::Sender<bool>)>,
    wake: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (results, replies): (Vec<Finished>, Vec<oneshot::Sender<bool>>) =
            batch.drain(..).unzip();
        let mut pause = Duration::from_millis(50);
        let accepted = loop {
            match store.finish(&results).await {
                Ok(accepted) => break accepted,
                Err(error) => {
                    // Keep the results: losing them would rerun handlers that succeeded.
                    tracing::warn!(%error, results = results.len(), retry_in = ?pause, "could not record results");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        wake.notify_one();
        for (reply, accepted) in replies.into_iter().zip(accepted) {
            // The delivery task may have been aborted at shutdown; the result stands.
            let _ = reply.send(accepted);
        }
    }
}
