//! Notifications mode: long-poll the SQS queue, commit what the messages say, then
//! delete them.
//!
//! A batch of up to ten messages is handled as a unit:
//! 1. each body is parsed; object changes this source wants become events, the test
//!    event and unwanted changes become nothing, and a body that is not a notification
//!    becomes a rejected input, as does a change whose event the log cannot store;
//! 2. the events commit in one transaction, then the rejected inputs are recorded,
//!    retrying while the store is unavailable; meanwhile the messages' visibility
//!    timeout is extended so that no other receiver takes them. Events the store
//!    refuses are split off and recorded as rejected inputs too, so that they never
//!    block the queue;
//! 3. only then are the messages deleted.
//!
//! A crash before step 3 leaves the messages in the queue: they are received again
//! after the visibility timeout, and their events dedupe against the committed ones.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
};
use switchyard_store::NewEvent;
use tokio_util::sync::CancellationToken;

use super::S3Runtime;
use super::notification::{self, Notification};
use crate::sources::{SourceDeps, retry};

/// The longest long poll SQS allows, in seconds.
const WAIT_SECONDS: i32 = 20;
/// The most messages one receive returns (and one batch call takes).
const BATCH: i32 = 10;
/// Backoff between failed receives.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// What one received batch turns into.
#[derive(Default)]
struct Batch {
    events: Vec<NewEvent>,
    /// The id of the message each event came from.
    origins: Vec<String>,
    rejected: Vec<Rejected>,
    /// Every message of the batch, to delete once the rest is committed.
    receipts: Vec<String>,
}

struct Rejected {
    message_id: String,
    reason: String,
    body: String,
}

/// Receives until `shutdown`. A receive in flight is abandoned at shutdown (its
/// messages reappear after the visibility timeout); a batch being committed is
/// finished first, unless the store is down.
pub(super) async fn run(
    source: &S3Runtime,
    queue_url: &str,
    deps: &SourceDeps,
    shutdown: &CancellationToken,
) {
    let visibility = visibility_seconds(source);
    let mut pause = FIRST_PAUSE;
    loop {
        let receive = source
            .clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(visibility)
            .send();
        let received = tokio::select! {
            received = receive => received,
            () = shutdown.cancelled() => return,
        };
        let messages = match received {
            Ok(output) => {
                pause = FIRST_PAUSE;
                output.messages.unwrap_or_default()
            }
            Err(error) => {
                tracing::warn!(source = %source.name, error = %DisplayErrorContext(&error), retry_in = ?pause, "could not receive from the queue");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let batch = read(source, deps, messages);
        let extender = tokio::spawn(keep_invisible(
            source.clients.sqs.clone(),
            queue_url.to_owned(),
            batch.receipts.clone(),
            visibility,
        ));
        let receipts = batch.receipts.clone();
        let committed = commit(source, deps, batch, shutdown).await;
        extender.abort();
        if committed.is_none() {
            // Shutdown while the store was down: the messages stay and come back.
            return;
        }
        delete(source, queue_url, &receipts).await;
    }
}

fn visibility_seconds(source: &S3Runtime) -> i32 {
    let seconds = source.config.visibility_timeout.get().as_secs().max(1);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

/// Parses every message of a receive.
fn read(source: &S3Runtime, deps: &SourceDeps, messages: Vec<Message>) -> Batch {
    let mut batch = Batch::default();
    for message in messages {
        let Some(receipt) = message.receipt_handle else {
            // Without a receipt handle the message cannot be deleted; SQS always sends one.
            continue;
        };
        let body = message.body.unwrap_or_default();
        let message_id = message.message_id.unwrap_or_default();
        match notification::parse(&body) {
            Ok(Notification::Test) => {
                tracing::debug!(source = %source.name, %message_id, "skipped the s3:TestEvent");
            }
            Ok(Notification::Changes(records)) => {
                for (index, event) in records
                    .iter()
                    .filter_map(|record| source.event(record))
                    .enumerate()
                {
                    match event.check_storable() {
                        Ok(()) => {
                            batch.events.push(deps.route(event));
                            batch.origins.push(message_id.clone());
                        }
                        Err(error) => {
                            tracing::warn!(source = %source.name, %message_id, %error, "quarantining a change whose event cannot be stored");
                            batch.rejected.push(Rejected {
                                message_id: format!("{message_id}#{index}"),
                                reason: error.to_string(),
                                body: body.clone(),
                            });
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(source = %source.name, %message_id, %error, "quarantining a message that is not an S3 notification");
                batch.rejected.push(Rejected {
                    message_id,
                    reason: error.to_string(),
                    body,
                });
            }
        }
        batch.receipts.push(receipt);
    }
    batch
}

/// Commits the batch's events, then its rejected inputs, with the events the store
/// refused among them. `None` on shutdown.
async fn commit(
    source: &S3Runtime,
    deps: &SourceDeps,
    mut batch: Batch,
    shutdown: &CancellationToken,
) -> Option<()> {
    let name = &source.name;
    if !batch.events.is_empty() {
        let refused = deps
            .commit(name, &batch.events, shutdown, || {
                deps.store.append(&batch.events)
            })
            .await?;
        for refused in refused {
            let event = &batch.events[refused.index].event;
            tracing::warn!(source = %name, id = %event.switchyard_id, reason = %refused.reason, "quarantining an event the store refused");
            batch.rejected.push(Rejected {
                message_id: format!("{}#{}", batch.origins[refused.index], event.switchyard_id),
                reason: refused.reason,
                body: serde_json::to_string(event).expect("an event is JSON"),
            });
        }
    }
    for rejected in &batch.rejected {
        let recorded = retry(shutdown, name, "record a rejected message", || {
            deps.store
                .reject_input(name, &rejected.message_id, &rejected.reason, &rejected.body)
        })
        .await?;
        if recorded {
            deps.metrics.input_rejected(name);
        }
    }
    Some(())
}

/// Extends the messages' visibility timeout every half timeout, for as long as the
/// batch is being committed (the caller aborts this task when it is done).
async fn keep_invisible(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipts: Vec<String>,
    visibility: i32,
) {
    let period = Duration::from_secs(u64::try_from(visibility).unwrap_or(1)) / 2;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(visibility)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let extended = sqs
            .change_message_visibility_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match extended {
            Ok(output) => tracing::debug!(
                extended = output.successful.len(),
                failed = output.failed.len(),
                "extended the visibility of messages being committed"
            ),
            Err(error) => {
                tracing::warn!(error = %DisplayErrorContext(&error), "could not extend the visibility of messages being committed")
            }
        }
    }
}

/// Deletes the messages of a committed batch. A message that fails to delete is
/// received again later, and its events dedupe.
async fn delete(source: &S3Runtime, queue_url: &str, receipts: &[String]) {
    if receipts.is_empty() {
        return;
    }
    let entries = receipts
        .iter()
        .enumerate()
        .map(|(i, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .expect("id and receipt handle are set")
        })
        .collect();
    let deleted = source
        .clients
        .sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await;
    match deleted {
        Ok(output) if output.failed.is_empty() => {}
        Ok(output) => {
            for failed in output.failed {
                tracing::warn!(source = %source.name, code = %failed.code, message = ?failed.message, "could not delete a committed message; it will be received again and deduplicated");
            }
        }
        Err(error) => {
            tracing::warn!(source = %source.name, error = %DisplayErrorContext(&error), "could not delete committed messages; they will be received again and deduplicated");
        }
    }
}
