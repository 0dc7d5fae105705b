//! What both backends share about the queue and its stored values:
//! status and outcome text, counters, limits and lease lengths, an event's CloudEvents
//! id and extensions, and the grouping of attempt rows under their deliveries.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value;
use switchyard_core::Event;
use uuid::Uuid;

use crate::{
    AttemptOutcome, AttemptRecord, DeliveryDetail, DeliveryStatus, Finished, Result, StoreError,
};

/// The error recorded on an attempt whose lease ran out before it reported a result.
pub(crate) const LEASE_EXPIRED: &str = "lease expired: the worker stopped heartbeating";

/// The stored `events.ce_id`: the CloudEvents id, or `None` when it is the text of the
/// Switchyard id (every event that did not arrive as a CloudEvent).
pub(crate) fn ce_id(event: &Event) -> Option<&str> {
    let generated = event.id.len() == 36
        && Uuid::parse_str(&event.id).is_ok_and(|id| id == event.switchyard_id);
    (!generated).then_some(event.id.as_str())
}

/// The CloudEvents id of a stored event, from its `ce_id` and its Switchyard id.
pub(crate) fn event_id(ce_id: Option<String>, switchyard_id: Uuid) -> String {
    ce_id.unwrap_or_else(|| switchyard_id.to_string())
}

/// The stored `events.extensions`: `None` when the event has none.
pub(crate) fn extensions(event: &Event) -> Option<&BTreeMap<String, Value>> {
    (!event.extensions.is_empty()).then_some(&event.extensions)
}

/// Decodes a stored `deliveries.status`.
pub(crate) fn status(text: &str) -> Result<DeliveryStatus> {
    DeliveryStatus::parse(text).ok_or_else(|| {
        StoreError::Invalid(format!("unknown delivery status {text:?} in the store"))
    })
}

/// Decodes a stored `attempts.outcome`.
pub(crate) fn outcome(text: &str) -> Result<AttemptOutcome> {
    AttemptOutcome::parse(text).ok_or_else(|| {
        StoreError::Invalid(format!("unknown attempt outcome {text:?} in the store"))
    })
}

/// A stored counter as `u32`; counters are never negative, and saturate if huge.
pub(crate) fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// A query limit: `0` means no limit, which both backends express as `None`.
pub(crate) fn limit(value: u32) -> Option<i64> {
    (value > 0).then_some(i64::from(value))
}

/// A lease length in whole milliseconds.
pub(crate) fn lease_millis(lease: Duration) -> Result<i64> {
    i64::try_from(lease.as_millis())
        .map_err(|_| StoreError::Invalid(format!("lease of {lease:?} is too long")))
}

/// For a batch of `len` inputs, which were accepted, given the positions (from 1) the
/// database returned for them.
pub(crate) fn positions_accepted(
    len: usize,
    positions: impl IntoIterator<Item = i64>,
) -> Vec<bool> {
    let mut accepted = vec![false; len];
    for position in positions {
        if let Some(slot) = usize::try_from(position - 1)
            .ok()
            .and_then(|i| accepted.get_mut(i))
        {
            *slot = true;
        }
    }
    accepted
}

/// The status a delivery moves to when an attempt finishes with `outcome`.
pub(crate) fn status_after(outcome: AttemptOutcome) -> DeliveryStatus {
    match outcome {
        AttemptOutcome::Succeeded => DeliveryStatus::Succeeded,
        AttemptOutcome::Retry | AttemptOutcome::Abandoned => DeliveryStatus::Pending,
        AttemptOutcome::Dead => DeliveryStatus::Dead,
    }
}

/// Logs a finished attempt that was refused because its lease is no longer held.
pub(crate) fn warn_refused(result: &Finished) {
    tracing::warn!(
        delivery_id = result.lease.delivery_id,
        attempt = result.attempt,
        outcome = result.outcome.as_str(),
        "refused a late result: the lease is no longer held (expired or given back), the attempt is not recorded"
    );
}

/// Puts each attempt into its delivery's `attempt_log`, keeping the attempts' order.
pub(crate) fn attach_attempts(deliveries: &mut [DeliveryDetail], attempts: Vec<AttemptRecord>) {
    let index: HashMap<i64, usize> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id, i))
        .collect();
    for attempt in attempts {
        if let Some(&i) = index.get(&attempt.delivery_id) {
            deliveries[i].attempt_log.push(attempt);
        }
    }
}
