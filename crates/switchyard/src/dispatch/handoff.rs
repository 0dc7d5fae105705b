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
//! The leases are as durable as the append, so a crash between the commit and the
//! handler start is recovered like any other expired lease.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use switchyard_store::{Claimed, Lease, NewDelivery, NewEvent};
use tokio::sync::OwnedSemaphorePermit;

use super::Dispatcher;

/// Handler slots held for the deliveries of one append. Dropping it frees them.
#[must_use = "dropping a reservation frees its slots"]
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Reservation {
    /// True when no delivery was marked to be claimed.
    pub fn is_empty(&self) -> bool {
        self.permits.is_empty()
    }
}

/// Claimed deliveries on their way to the run loop, with their slots.
pub(super) struct Handed {
    pub claimed: Vec<Claimed>,
    pub permits: Vec<OwnedSemaphorePermit>,
}

impl Dispatcher {
    /// Marks the deliveries of `batch` that this process can start at once as
    /// [`claim`](NewDelivery::claim) and holds a handler slot for each. Marks none
    /// unless the run loop has been [started](Dispatcher::start) and not stopped.
    pub fn reserve(&self, batch: &mut [NewEvent]) -> Reservation {
        let mut permits = Vec::new();
        if !self.accepting.load(Ordering::Acquire) {
            return Reservation { permits };
        }
        let mut taken: HashMap<&str, usize> = HashMap::new();
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
            let taken = taken.entry(runtime.name.as_ref()).or_default();
            if *taken >= runtime.permits.available_permits() {
                continue;
            }
            let Ok(permit) = self.global.clone().try_acquire_owned() else {
                break;
            };
            *taken += 1;
            *claim = true;
            permits.push(permit);
        }
        Reservation { permits }
    }

    /// Starts the deliveries an append claimed under `reservation`. If the run loop
    /// has stopped meanwhile, gives them back to the queue.
    pub async fn hand_off(&self, claimed: Vec<Claimed>, reservation: Reservation) {
        if claimed.is_empty() {
            return;
        }
        let handed = Handed {
            claimed,
            permits: reservation.permits,
        };
        if let Err(refused) = self.handoffs.send(handed) {
            let leases: Vec<Lease> = refused.0.claimed.iter().map(|c| c.lease).collect();
            if let Err(error) = self.store.release(&leases).await {
                tracing::warn!(%error, count = leases.len(), "could not release deliveries claimed during shutdown; their leases will expire");
            }
        }
    }
}
