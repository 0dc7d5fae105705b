//! The leases this process holds, and how long it may trust each one.
//!
//! A lease lasts `dispatcher.lease` from the moment the database ran the claim (or the
//! last heartbeat) that set it. This process cannot see that moment, only when it sent
//! the statement, which is earlier; so it counts each lease as held until the send
//! time plus the lease length ([`Holding::valid_until`]), which errs on the safe side.
//! The invariants:
//! - A delivery is never started unless its lease is held for at least a margin more
//!   by that count. A process that was paused (SIGSTOP, a long GC-like stall, a VM
//!   freeze) past its leases therefore does not start the deliveries it had claimed
//!   before the pause: other processes may have reclaimed and run them meanwhile.
//! - A lease that the heartbeat finds taken over, or whose count runs out before a
//!   heartbeat could renew it, is *lost*: its token fires. A delivery waiting for a
//!   slot then gives up, and a running handler learns it through its cancellation
//!   token.
//! - A lease whose result is on its way to the store ([`InFlight::finishing`]) is
//!   not reported lost: the store's fencing decides whether that result counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchyard_store::Lease;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What this process knows of one lease it holds.
struct Holding {
    /// Until when the lease is surely held; see the module docs.
    valid_until: Instant,
    /// Fires when the lease is lost.
    lost: CancellationToken,
    /// Its result has been handed to the completer.
    finishing: bool,
}

/// The leases this process holds. Heartbeats extend them, the completer drops a lease
/// once its result is recorded, and shutdown releases what is left. Cheap to clone.
#[derive(Clone, Default)]
pub(super) struct InFlight(Arc<Mutex<HashMap<Lease, Holding>>>);

/// Leases a heartbeat round gave up on.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Lost {
    /// Their time ran out before a heartbeat could renew them.
    pub expired: usize,
    /// The store no longer has them: another process took the delivery over.
    pub taken: usize,
}

impl InFlight {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Lease, Holding>> {
        self.0.lock().expect("in-flight lock")
    }

    /// Starts tracking a lease held until `valid_until`. Returns the token that fires
    /// if it is lost.
    pub(super) fn track(&self, lease: Lease, valid_until: Instant) -> CancellationToken {
        let lost = CancellationToken::new();
        self.held().insert(
            lease,
            Holding {
                valid_until,
                lost: lost.clone(),
                finishing: false,
            },
        );
        lost
    }

    /// Whether the lease is held (by this process's count) for at least `margin`
    /// more: a delivery may start only then.
    pub(super) fn holds_for(&self, lease: &Lease, margin: std::time::Duration) -> bool {
        self.held()
            .get(lease)
            .is_some_and(|holding| holding.valid_until > Instant::now() + margin)
    }

    /// Marks the lease's result as handed to the completer.
    pub(super) fn finishing(&self, lease: &Lease) {
        if let Some(holding) = self.held().get_mut(lease) {
            holding.finishing = true;
        }
    }

    pub(super) fn remove(&self, leases: impl IntoIterator<Item = Lease>) {
        let mut held = self.held();
        for lease in leases {
            held.remove(&lease);
        }
    }

    /// Starts a heartbeat round at `now`: gives up on the leases whose time has run
    /// out (they fire and are no longer tracked, unless finishing) and returns the
    /// rest, to be renewed.
    pub(super) fn due(&self, now: Instant) -> (Vec<Lease>, Lost) {
        let mut lost = Lost::default();
        let mut held = self.held();
        held.retain(|_, holding| {
            let keep = holding.finishing || holding.valid_until > now;
            if !keep {
                holding.lost.cancel();
                lost.expired += 1;
            }
            keep
        });
        (held.keys().copied().collect(), lost)
    }

    /// Ends a heartbeat round sent at `sent`: the leases the store still `held` are
    /// trusted until `valid_until`; the others fire and are no longer tracked, unless
    /// their result is already on its way (then they are left to the completer).
    pub(super) fn renewed(&self, leases: &[Lease], held: &[bool], valid_until: Instant) -> Lost {
        let mut lost = Lost::default();
        let mut tracked = self.held();
        for (lease, &still_held) in leases.iter().zip(held) {
            let Some(holding) = tracked.get_mut(lease) else {
                // Recorded and dropped meanwhile.
                continue;
            };
            if still_held {
                holding.valid_until = holding.valid_until.max(valid_until);
            } else if !holding.finishing {
                holding.lost.cancel();
                tracked.remove(lease);
                lost.taken += 1;
            }
        }
        lost
    }

    /// Stops tracking every lease and returns them, for release at shutdown.
    pub(super) fn take(&self) -> Vec<Lease> {
        self.held().drain().map(|(lease, _)| lease).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    fn lease(id: i64) -> Lease {
        Lease {
            delivery_id: id,
            token: Uuid::new_v4(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_may_start_only_while_it_is_held_for_the_margin() {
        let in_flight = InFlight::default();
        let margin = Duration::from_secs(5);
        let held = lease(1);
        let lost = in_flight.track(held, Instant::now() + Duration::from_secs(30));
        assert!(in_flight.holds_for(&held, margin));
        tokio::time::advance(Duration::from_secs(26)).await;
        assert!(
            !in_flight.holds_for(&held, margin),
            "four seconds left is less than the margin"
        );
        assert!(!lost.is_cancelled(), "nothing said it was lost yet");
        assert!(
            !in_flight.holds_for(&lease(2), margin),
            "an untracked lease"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_round_gives_up_on_expired_and_taken_leases_but_not_finishing_ones() {
        let in_flight = InFlight::default();
        let start = Instant::now();
        let (expired, taken, kept, finishing) = (lease(1), lease(2), lease(3), lease(4));
        let expired_lost = in_flight.track(expired, start + Duration::from_secs(10));
        let taken_lost = in_flight.track(taken, start + Duration::from_secs(30));
        let kept_lost = in_flight.track(kept, start + Duration::from_secs(30));
        let finishing_lost = in_flight.track(finishing, start + Duration::from_secs(10));
        in_flight.finishing(&finishing);

        tokio::time::advance(Duration::from_secs(20)).await;
        let (due, lost) = in_flight.due(Instant::now());
        assert_eq!(
            lost,
            Lost {
                expired: 1,
                taken: 0
            }
        );
        assert!(expired_lost.is_cancelled());
        let mut due_ids: Vec<i64> = due.iter().map(|l| l.delivery_id).collect();
        due_ids.sort_unstable();
        assert_eq!(due_ids, [2, 3, 4], "the finishing lease is still renewed");

        let renewed_until = Instant::now() + Duration::from_secs(30);
        let lost = in_flight.renewed(
            &[taken, kept, finishing],
            &[false, true, false],
            renewed_until,
        );
        assert_eq!(
            lost,
            Lost {
                expired: 0,
                taken: 1
            }
        );
        assert!(taken_lost.is_cancelled());
        assert!(!kept_lost.is_cancelled());
        assert!(
            !finishing_lost.is_cancelled(),
            "a finishing lease is left to the completer"
        );
        assert!(in_flight.holds_for(&kept, Duration::from_secs(25)));

        in_flight.remove([finishing]);
        let left: Vec<i64> = in_flight.take().iter().map(|l| l.delivery_id).collect();
        assert_eq!(left, [3]);
    }
}
