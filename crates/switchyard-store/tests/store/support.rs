//! Helpers the scenarios share: events, appends, claims and results in a line each.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_core::Event;
use switchyard_store::{AttemptOutcome, Claimed, Finished, NewDelivery, NewEvent, Store};
use uuid::Uuid;

pub const LEASE: Duration = Duration::from_secs(30);
pub const SHORT_LEASE: Duration = Duration::from_millis(50);

/// A timestamp as both backends store it: microsecond precision.
pub fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).expect("in range")
}

pub fn event(source_name: &str, ty: &str) -> Event {
    let mut event = Event::new(source_name, format!("/test/{source_name}"), ty);
    event.time = micros(event.time);
    event.received_at = micros(event.received_at);
    event
}

pub fn to(event: &Event, triggers: &[&str]) -> NewEvent {
    NewEvent {
        event: event.clone(),
        deliveries: triggers
            .iter()
            .map(|trigger| NewDelivery {
                trigger: (*trigger).to_owned(),
                ordering_key: None,
                claim: false,
            })
            .collect(),
    }
}

pub fn keyed(event: &Event, trigger: &str, key: &str) -> NewEvent {
    NewEvent {
        event: event.clone(),
        deliveries: vec![NewDelivery {
            trigger: trigger.to_owned(),
            ordering_key: Some(key.to_owned()),
            claim: false,
        }],
    }
}

pub fn names(triggers: &[&str]) -> Vec<String> {
    triggers.iter().map(|t| (*t).to_owned()).collect()
}

pub fn finished(
    claimed: &Claimed,
    outcome: AttemptOutcome,
    retry_at: Option<DateTime<Utc>>,
    error: Option<&str>,
) -> Finished {
    Finished {
        lease: claimed.lease,
        attempt: claimed.attempt,
        started_at: claimed.claimed_at,
        duration_ms: 7,
        outcome,
        retry_at,
        error: error.map(str::to_owned),
        output: None,
    }
}

pub async fn claim(store: &Arc<dyn Store>, triggers: &[&str], limit: u32) -> Vec<Claimed> {
    store
        .claim(&names(triggers), limit, LEASE)
        .await
        .expect("claim")
}

pub async fn claim_one(store: &Arc<dyn Store>, trigger: &str) -> Claimed {
    let mut claimed = claim(store, &[trigger], 1).await;
    assert_eq!(
        claimed.len(),
        1,
        "expected one runnable delivery of {trigger}"
    );
    claimed.remove(0)
}

pub fn event_ids(claimed: &[Claimed]) -> Vec<Uuid> {
    claimed.iter().map(|c| c.event.switchyard_id).collect()
}
