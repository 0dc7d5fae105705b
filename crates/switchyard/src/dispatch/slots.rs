//! Handler slots, for the process and for each trigger.
//!
//! A delivery this process has claimed (and holds the lease of) takes a *hold* slot;
//! it runs only once it also has a *run* slot. The process and each trigger have
//! `concurrency` run slots (their own) and `concurrency + prefetch` hold slots
//! (`dispatcher.prefetch`). The run loop claims no more than the free hold
//! slots, so the deliveries a claim brings back wait here for a run slot. Without the
//! prefetch, a claim could ask only for free run slots, and those sat idle through its
//! round trip.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The slots of the process, or of one trigger.
pub struct Slots {
    run: Arc<Semaphore>,
    hold: Arc<Semaphore>,
    concurrency: usize,
    holdable: usize,
    /// Told when a hold slot is freed.
    freed: Arc<Notify>,
    /// Held deliveries waiting for their run slots; counted on a trigger's slots only.
    waiting: AtomicUsize,
}

impl Slots {
    /// `concurrency` deliveries run at once, and `prefetch` more may wait for them.
    pub fn new(concurrency: u32, prefetch: u32) -> Self {
        let concurrency = concurrency as usize;
        let holdable = concurrency + prefetch as usize;
        Self {
            run: Arc::new(Semaphore::new(concurrency)),
            hold: Arc::new(Semaphore::new(holdable)),
            concurrency,
            holdable,
            freed: Arc::new(Notify::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Run slots taken: by running handlers, and by claims on append about to start.
    pub fn running(&self) -> usize {
        self.concurrency - self.run.available_permits()
    }

    /// Held deliveries waiting for their run slots.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// How many deliveries may be held at once.
    pub fn holdable(&self) -> usize {
        self.holdable
    }

    /// How many more deliveries may be held now.
    pub fn room(&self) -> usize {
        self.hold.available_permits()
    }

    /// How many more deliveries may start now.
    #[cfg(test)]
    pub fn free_to_run(&self) -> usize {
        self.run.available_permits()
    }

    pub fn try_hold(&self) -> Option<Hold> {
        let permit = self.hold.clone().try_acquire_owned().ok()?;
        Some(Hold {
            permit: Some(permit),
            freed: self.freed.clone(),
        })
    }

    /// Waits until `ready` says so, asking again each time one of these hold slots is
    /// freed. It takes no slot meanwhile: a waiter that held slots as they freed would
    /// keep them from claims on append.
    pub async fn until(&self, mut ready: impl FnMut() -> bool) {
        loop {
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if ready() {
                return;
            }
            freed.await;
        }
    }

    fn try_run(&self) -> Option<OwnedSemaphorePermit> {
        self.run.clone().try_acquire_owned().ok()
    }

    async fn run(&self) -> OwnedSemaphorePermit {
        let permit = self.run.clone().acquire_owned().await;
        permit.expect("the semaphore is never closed")
    }
}

/// One hold slot. Dropping it frees the slot.
pub struct Hold {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.freed.notify_waiters();
    }
}

/// The hold slots of a delivery this process has: one of the process's and one of its
/// trigger's. Dropping it frees them, the trigger's first: whoever the process's wakes
/// finds both free.
pub struct Held {
    _trigger: Hold,
    _process: Hold,
}

impl Held {
    pub fn new(process: Hold, trigger: Hold) -> Self {
        Self {
            _process: process,
            _trigger: trigger,
        }
    }
}

/// The run slots of a running delivery: its trigger's and the process's.
pub struct Running {
    _trigger: OwnedSemaphorePermit,
    _process: OwnedSemaphorePermit,
}

impl Running {
    /// Takes both run slots if both are free.
    pub fn try_take(trigger: &Slots, process: &Slots) -> Option<Self> {
        let trigger = trigger.try_run()?;
        let process = process.try_run()?;
        Some(Self {
            _trigger: trigger,
            _process: process,
        })
    }

    /// Waits for the trigger's slot first, so that a delivery waiting for a busy
    /// trigger does not keep a process slot from the other triggers. Meanwhile the
    /// delivery counts as waiting in the trigger's slots.
    pub async fn take(trigger: &Slots, process: &Slots) -> Self {
        let _waiting = Waiting::new(trigger);
        let trigger = trigger.run().await;
        let process = process.run().await;
        Self {
            _trigger: trigger,
            _process: process,
        }
    }
}

/// Counts a delivery as waiting in some slots until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(slots: &'a Slots) -> Self {
        slots.waiting.fetch_add(1, Ordering::Relaxed);
        Self(&slots.waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_delivery_is_held_before_it_runs_and_prefetch_adds_only_hold_slots() {
        let trigger = Slots::new(2, 1);
        let process = Slots::new(8, 8);
        assert_eq!((trigger.holdable(), trigger.room()), (3, 3));
        let held: Vec<_> = (0..3).map(|_| trigger.try_hold().unwrap()).collect();
        assert!(trigger.try_hold().is_none(), "three held fill the room");
        let first = Running::try_take(&trigger, &process).unwrap();
        let second = Running::try_take(&trigger, &process).unwrap();
        assert!(
            Running::try_take(&trigger, &process).is_none(),
            "the trigger runs two at once"
        );
        assert_eq!(process.free_to_run(), 6);
        drop((first, held));
        assert_eq!((trigger.room(), trigger.free_to_run()), (3, 1));
        drop(second);
        assert_eq!(process.free_to_run(), 8);
    }

    #[test]
    fn waiting_for_room_takes_no_slot() {
        let process = Slots::new(1, 1);
        let first = process.try_hold().unwrap();
        let mut waiting = pin!(process.until(|| process.room() >= 2));
        assert!(
            waiting.as_mut().now_or_never().is_none(),
            "one of two slots is free"
        );
        assert_eq!(process.room(), 1, "the waiter took nothing");
        drop(process.try_hold().unwrap());
        assert!(waiting.as_mut().now_or_never().is_none(), "still one free");
        drop(first);
        assert!(waiting.as_mut().now_or_never().is_some());
    }

    #[test]
    fn a_delivery_waiting_for_a_run_slot_counts_as_waiting_until_it_runs_or_gives_up() {
        let (trigger, process) = (Slots::new(1, 4), Slots::new(8, 0));
        let first = Running::try_take(&trigger, &process).unwrap();
        assert_eq!((trigger.running(), trigger.waiting()), (1, 0));
        let mut second = Box::pin(Running::take(&trigger, &process));
        let mut third = Box::pin(Running::take(&trigger, &process));
        assert!(second.as_mut().now_or_never().is_none());
        assert!(third.as_mut().now_or_never().is_none());
        assert_eq!(trigger.waiting(), 2);
        drop(third);
        assert_eq!(trigger.waiting(), 1, "giving up stops counting");
        drop(first);
        let second = second.as_mut().now_or_never().expect("the slot is free");
        assert_eq!((trigger.running(), trigger.waiting()), (1, 0));
        assert_eq!(process.running(), 1);
        drop(second);
        assert_eq!(trigger.running(), 0);
    }

    #[test]
    fn without_prefetch_a_trigger_holds_only_what_it_runs() {
        let trigger = Slots::new(1, 0);
        let _held = trigger.try_hold().unwrap();
        assert!(trigger.try_hold().is_none());
    }
}
