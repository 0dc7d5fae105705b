//! The retention task of `switchyard run`: deletes what has expired at start-up and
//! then every `retention.interval`, until shutdown.
//!
//! Every process sharing a store runs it. That is safe: on Postgres concurrent runs
//! skip each other's locked rows, and on SQLite they take turns at the write lock; a
//! row is deleted once either way.

use std::sync::Arc;

use chrono::Utc;
use switchyard_core::config::RetentionConfig;
use switchyard_store::Store;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Runs retention now and then every `policy.interval`, until `shutdown` fires. A run
/// in progress stops between two batches, or drops the batch in progress (which then
/// commits nothing). A failed run is logged and tried again at the next interval.
pub async fn run(
    store: Arc<dyn Store>,
    policy: RetentionConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(policy.interval.get());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = once(&*store, &policy, &metrics) => {}
        }
    }
}

/// One run: deletes everything expired, counts it in the metrics, logs it, and reads
/// each table's oldest row for `switchyard_oldest_row_age_seconds`.
async fn once(store: &dyn Store, policy: &RetentionConfig, metrics: &Metrics) {
    let now = Utc::now();
    match switchyard_store::delete_expired(store, policy, now).await {
        Ok(deleted) => {
            metrics.retention_deleted(&deleted);
            if deleted.is_empty() {
                tracing::debug!("retention found nothing expired");
            } else {
                tracing::info!(
                    events = deleted.events,
                    deliveries = deleted.deliveries,
                    attempts = deleted.attempts,
                    dead_letters = deleted.dead_letters,
                    rejected_inputs = deleted.rejected_inputs,
                    "retention deleted expired rows"
                );
            }
        }
        Err(error) => {
            tracing::warn!(%error, "retention failed; it runs again at the next interval");
        }
    }
    match store.retention_due(policy, now).await {
        Ok(due) => metrics.oldest_rows(&due),
        Err(error) => tracing::warn!(%error, "retention could not read the oldest rows"),
    }
}
