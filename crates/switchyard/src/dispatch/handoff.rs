//! Claim on append: deliveries that local ingress creates while this process has free
//! handler slots are created already claimed and handed straight to the run loop, so
//! they skip the wake-up, the claim statement and its commit.
//!
//! Ingress [reserves](Dispatcher::reserve) slots before it appends, marks that many
//! deliveries [`claim`](NewDelivery::claim), appends with
//! [`append_claiming`](switchyard_store::Store::append_claiming), and
//! [hands off](Dispatcher::hand_off) what the append claimed. A delivery with an
//! ordering key is never claimed this way: its key decides when it may run, so it goes
//! through the queue. A delivery whose trigger has no free slot is left pending, so a
//! backlog is not overtaken while it waits for slots.
//!
//! A reservation takes the trigger's slots as well as the process's, hold and run
//! slots both, so appends in flight at once (and claims) cannot count on the same free
//! slot: a delivery created `running` starts as soon as it is handed off.
//!
//! The leases are as durable as the append, so a crash between the commit and the
//! handler start is recovered like any other expired lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_store::{Claimed, Lease, NewDelivery, NewEvent};
use tokio::time::Instant;

use super::slots::{Held, Running};
use super::{Dispatcher, Starting};

/// The slots held for the deliveries an append is to claim, by trigger name: for each,
/// the hold and run slots of the process and of its trigger. Dropping it frees them.
#[must_use = "dropping a reservation frees its slots"]
pub struct Reservation {
    slots: HashMap<Arc<str>, Vec<(Held, Running)>>,
}

impl Reservation {
    /// True when no delivery was marked to be claimed.
    pub fn is_empty(&self) -> bool {
        self.slots.values().all(Vec::is_empty)
    }

    /// Gives each delivery the append claimed the slots reserved for it.
    pub(super) fn assign(mut self, claimed: Vec<Claimed>) -> Vec<Starting> {
        claimed
            .into_iter()
            .map(|delivery| {
                let (held, running) = self
                    .slots
                    .get_mut(delivery.trigger.as_str())
                    .and_then(Vec::pop)
                    .expect("an append claims only the deliveries it reserved slots for");
                (delivery, held, Some(running))
            })
            .collect()
    }
}

/// Claimed deliveries on their way to the run loop, with their slots, and when the
/// append that claimed them was sent (their leases count from then).
pub(super) struct Handoff {
    pub claimed: Vec<Claimed>,
    pub slots: Reservation,
    pub sent: Instant,
}

impl Dispatcher {
    /// Marks the deliveries of `batch` that this process can start at once as
    /// [`claim`](NewDelivery::claim) and holds a handler slot and a slot of its
    /// trigger for each. Marks none unless the run loop has been
    /// [started](Dispatcher::start) and not stopped.
    pub fn reserve(&self, batch: &mut [NewEvent]) -> Reservation {
        let mut reservation = Reservation {
            slots: HashMap::new(),
        };
        if !self.accepting.load(Ordering::Acquire) {
            return reservation;
        }
        let deliveries = batch.iter_mut().flat_map(|item| item.deliveries.iter_mut());
        for delivery in deliveries {
            let NewDelivery {
                trigger,
                ordering_key: None,
                claim,
            } = delivery
            else {
                continue;
            };
            let Some(runtime) = self.triggers.get(trigger.as_str()) else {
                continue;
            };
            let Some(running) = Running::try_take(&runtime.slots, &self.slots) else {
                continue;
            };
            let Some(trigger_held) = runtime.slots.try_hold() else {
                continue;
            };
            let Some(process_held) = self.slots.try_hold() else {
                break;
            };
            *claim = true;
            let held = Held::new(process_held, trigger_held);
            reservation
                .slots
                .entry(runtime.name.clone())
                .or_default()
                .push((held, running));
        }
        reservation
    }

    /// Starts the deliveries an append sent at `sent` claimed under `reservation`. If
    /// the run loop has stopped meanwhile, gives them back to the queue.
    pub async fn hand_off(&self, claimed: Vec<Claimed>, reservation: Reservation, sent: Instant) {
        if claimed.is_empty() {
            return;
        }
        let handoff = Handoff {
            claimed,
            slots: reservation,
            sent,
        };
        if let Err(refused) = self.handoffs.send(handoff) {
            let leases: Vec<Lease> = refused.0.claimed.iter().map(|c| c.lease).collect();
            if let Err(error) = self.store.release(&leases).await {
                tracing::warn!(%error, count = leases.len(), "could not release deliveries claimed during shutdown; their leases will expire");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use switchyard_core::Event;
    use switchyard_core::config::DispatcherConfig;
    use switchyard_core::retry::RetryPolicy;
    use switchyard_store::{NewDelivery, NewEvent, SqliteStore, Store};
    use tokio::sync::Notify;

    use crate::dispatch::{Dispatcher, Redactor, Slots, TriggerRuntime};
    use crate::handler::{Resources, handler_fn};
    use crate::metrics::Metrics;

    fn to(trigger: &str) -> Vec<NewEvent> {
        vec![NewEvent {
            event: Event::new("s", "/s", "t"),
            deliveries: vec![NewDelivery {
                trigger: trigger.to_owned(),
                ordering_key: None,
                claim: false,
            }],
        }]
    }

    fn marked(batch: &[NewEvent]) -> bool {
        batch[0].deliveries[0].claim
    }

    #[tokio::test]
    async fn appends_in_flight_do_not_count_on_the_same_trigger_slot() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let trigger = TriggerRuntime {
            name: "t".into(),
            handler: Arc::new(handler_fn(|_, _| async { Ok(()) })),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(1),
            slots: Slots::new(1, 1),
            ordered: false,
            metrics: Metrics::new().trigger("t"),
            redactor: Redactor::default(),
        };
        let dispatcher = Dispatcher::new(
            Arc::new(store),
            vec![trigger],
            DispatcherConfig::default(),
            Arc::new(Notify::new()),
            Arc::new(Resources::default()),
        );
        // As `start` does, without a run loop to take the handoffs.
        dispatcher.accepting.store(true, Ordering::Release);

        let (mut first, mut second, mut third) = (to("t"), to("t"), to("t"));
        let held = dispatcher.reserve(&mut first);
        assert!(marked(&first));
        let slots = &dispatcher.triggers["t"].slots;
        assert_eq!(slots.free_to_run(), 0, "the reservation holds the slot");
        assert_eq!(slots.room(), 1, "and one of the trigger's two hold slots");
        let refused = dispatcher.reserve(&mut second);
        assert!(
            !marked(&second),
            "the trigger's one slot is reserved already"
        );
        assert!(refused.is_empty());

        drop(held);
        let _again = dispatcher.reserve(&mut third);
        assert!(marked(&third), "dropping a reservation frees its slots");
    }

    /// Claims on append can take a trigger's room while a claim is on its way; what
    /// that claim brings past the room goes back to the queue.
    #[tokio::test]
    async fn a_claim_past_its_trigger_s_room_is_released() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
        store.migrate().await.unwrap();
        let trigger = TriggerRuntime {
            name: "t".into(),
            handler: Arc::new(handler_fn(|_, _| async { Ok(()) })),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(1),
            slots: Slots::new(1, 0),
            ordered: false,
            metrics: Metrics::new().trigger("t"),
            redactor: Redactor::default(),
        };
        let dispatcher = Dispatcher::new(
            store.clone(),
            vec![trigger],
            DispatcherConfig::default(),
            Arc::new(Notify::new()),
            Arc::new(Resources::default()),
        );
        store.append(&to("t")).await.unwrap();
        store.append(&to("t")).await.unwrap();
        let triggers = ["t".to_owned()];
        let lease = Duration::from_secs(30);
        let claimed = store.claim(&triggers, 2, lease).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let permits = (0..2)
            .map(|_| dispatcher.slots.try_hold().unwrap())
            .collect();

        let starting = dispatcher.hold(claimed, permits);
        assert_eq!(starting.len(), 1, "the trigger has room for one");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if store.claim(&triggers, 2, lease).await.unwrap().len() == 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the delivery past the room was not released"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
