//! The dispatcher: claims runnable deliveries, runs their handlers under the retry
//! policy, and records every attempt.
//!
//! One loop claims in batches while this process has room (see [`slots`]: the
//! deliveries it may hold, running or waiting for a slot). Each claimed delivery
//! runs on its own task, once a slot of its trigger and one of the process are free.
//! Beside the loop:
//! - a heartbeat task extends the leases of everything in flight, and stops the
//!   deliveries whose lease was lost (see [`leases`]);
//! - a reclaim task returns deliveries whose holder died (expired leases) to the queue;
//! - a completer task records results in batched, fenced transactions.
//!
//! Deliveries that local ingress claimed as it appended them arrive on a channel
//! instead (see [`handoff`]). Wake-ups come from the in-process [`Notify`] (local
//! ingress), from the store (Postgres LISTEN/NOTIFY) and, as the safety net, from
//! polling.

mod attempt;
mod completer;
mod handoff;
mod leases;
mod redact;
mod slots;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use switchyard_core::RetryPolicy;
use switchyard_core::config::DispatcherConfig;
use switchyard_store::{AttemptOutcome, Claimed, Finished, Lease, Store, StoreError};
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use attempt::Verdict;
use completer::Completer;
use handoff::Handoff;
use leases::InFlight;
pub use redact::Redactor;
pub use slots::Slots;
use slots::{Held, Hold, Running};

use crate::HandlerError;
use crate::handler::{Context, Handler, Output, Resources};
use crate::metrics::{ClaimedVia, Occupancy, TriggerMetrics};

/// Most deliveries one claim takes.
const CLAIM_BATCH: usize = 256;

/// Most claims one process has in flight at once. A second claim overlaps the first's
/// round trip, so handler slots do not sit idle while the store answers.
const CLAIMS_IN_FLIGHT: usize = 2;

/// A claim in flight: the process's hold slots it took, how many deliveries it asked
/// for, and when it was sent (its leases count from then).
struct Claim {
    permits: Vec<Hold>,
    wanted: usize,
    sent: Instant,
}

/// A delivery on its way to its task, with its hold slots, and its run slots if it
/// came with them.
type Starting = (Claimed, Held, Option<Running>);

type ClaimFuture = Pin<Box<dyn Future<Output = (Claim, Result<Vec<Claimed>, StoreError>)> + Send>>;

/// How a delivery is stopped before its handler returns.
struct Stop {
    /// Fires when its lease is lost (see [`leases`]).
    lost: CancellationToken,
    /// The handler's cancellation token: fired at the deadline, when shutdown's grace
    /// runs out, and when the lease is lost.
    cancel: CancellationToken,
}

/// Sleeps until `until`; never returns when there is none.
async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// A trigger as the dispatcher runs it.
pub struct TriggerRuntime {
    pub name: Arc<str>,
    pub handler: Arc<dyn Handler>,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    /// Its `concurrency`, and the process's `prefetch`.
    pub slots: Slots,
    /// Whether it has `ordering`: a finished delivery may let the next of its key run.
    pub ordered: bool,
    /// Its series; see [`Metrics::trigger`](crate::metrics::Metrics::trigger).
    pub metrics: TriggerMetrics,
    /// Clears the configuration's secrets out of its handler's output.
    pub redactor: Redactor,
}

/// What one executed delivery came to; returned by [`Dispatcher::run_next`].
#[derive(Clone, Debug)]
pub struct Executed {
    pub claimed: Claimed,
    pub verdict: Verdict,
    /// Whether the store accepted the result (false: the lease was lost meanwhile).
    pub recorded: bool,
    /// What the handler said, as recorded: see [`Context::set_output`].
    pub output: Option<String>,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    triggers: HashMap<String, Arc<TriggerRuntime>>,
    trigger_names: Vec<String>,
    settings: DispatcherConfig,
    wake: Arc<Notify>,
    resources: Arc<Resources>,
    in_flight: InFlight,
    /// This process's slots (`dispatcher.concurrency` and `prefetch`), shared by claims
    /// and handoffs.
    slots: Slots,
    /// Whether the run loop takes handoffs.
    accepting: AtomicBool,
    handoffs: mpsc::UnboundedSender<Handoff>,
    /// Taken by [`Dispatcher::start`].
    handed: Mutex<Option<mpsc::UnboundedReceiver<Handoff>>>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        triggers: Vec<TriggerRuntime>,
        settings: DispatcherConfig,
        wake: Arc<Notify>,
        resources: Arc<Resources>,
    ) -> Self {
        let triggers: HashMap<_, _> = triggers
            .into_iter()
            .map(|t| (t.name.to_string(), Arc::new(t)))
            .collect();
        let mut trigger_names: Vec<String> = triggers.keys().cloned().collect();
        trigger_names.sort();
        let (handoffs, handed) = mpsc::unbounded_channel();
        Self {
            store,
            triggers,
            trigger_names,
            slots: Slots::new(settings.concurrency, settings.prefetch),
            settings,
            wake,
            resources,
            in_flight: InFlight::default(),
            accepting: AtomicBool::new(false),
            handoffs,
            handed: Mutex::new(Some(handed)),
        }
    }

    /// How long a claim holds a delivery before another process may take it, unless
    /// heartbeats extend it.
    pub fn lease(&self) -> Duration {
        self.settings.lease.get()
    }

    /// Starts the run loop on a task of its own. From then on, ingress hands it the
    /// deliveries it claims. It runs until `shutdown` fires, then drains: in-flight
    /// deliveries get `shutdown_grace` to finish, deliveries not yet started are
    /// released at once, and whatever is still running after the grace is cancelled
    /// and released.
    ///
    /// # Panics
    /// When called a second time.
    pub fn start(self: Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let handed = self
            .handed
            .lock()
            .expect("handoff lock")
            .take()
            .expect("a dispatcher starts once");
        self.accepting
            .store(!self.triggers.is_empty(), Ordering::Release);
        tokio::spawn(self.run(shutdown, handed))
    }

    async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        mut handed: mpsc::UnboundedReceiver<Handoff>,
    ) {
        if self.triggers.is_empty() {
            shutdown.cancelled().await;
            return;
        }
        let completer = Completer::start(
            self.store.clone(),
            self.wake.clone(),
            self.in_flight.clone(),
        );
        let background = CancellationToken::new();
        tokio::spawn(self.clone().heartbeat(background.clone()));
        tokio::spawn(self.clone().reclaim(background.clone()));
        tokio::spawn(listen(
            self.store.clone(),
            self.wake.clone(),
            background.clone(),
        ));

        let handlers_cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // Deliveries handed off by ingress come with their run slots; claimed ones wait
        // for them in `deliver`. Their leases were taken by a statement sent at `sent`.
        let spawn =
            |tasks: &mut JoinSet<()>, deliveries: Vec<Starting>, via: ClaimedVia, sent: Instant| {
                let mut per_trigger: HashMap<&str, u64> = HashMap::new();
                for (delivery, ..) in &deliveries {
                    *per_trigger.entry(delivery.trigger.as_str()).or_default() += 1;
                }
                for (trigger, count) in per_trigger {
                    self.triggers[trigger].metrics.claimed(via, count);
                }
                for (delivery, held, running) in deliveries {
                    let this = self.clone();
                    let completer = completer.clone();
                    let shutdown = shutdown.clone();
                    let stop = Stop {
                        lost: self.in_flight.track(delivery.lease, sent + self.lease()),
                        cancel: handlers_cancel.child_token(),
                    };
                    tasks.spawn(async move {
                        this.deliver(delivery, held, running, completer, shutdown, stop)
                            .await
                    });
                }
            };

        let mut claims: FuturesUnordered<ClaimFuture> = FuturesUnordered::new();
        // Slots that claims in flight may fill.
        let mut reserved = 0usize;
        // The last claim came back short: wait for news once the claims in flight are
        // back.
        let mut drained = false;
        let mut failures = 0u32;
        let mut paused_until: Option<Instant> = None;
        loop {
            while tasks.try_join_next().is_some() {}
            if drained && claims.is_empty() {
                self.idle(&self.open_triggers(), &shutdown, &mut handed, |h| {
                    spawn(
                        &mut tasks,
                        h.slots.assign(h.claimed),
                        ClaimedVia::Append,
                        h.sent,
                    );
                })
                .await;
                drained = false;
                if shutdown.is_cancelled() {
                    break;
                }
            }
            let may_claim = claims.len() < CLAIMS_IN_FLIGHT && !drained && paused_until.is_none();
            // Alone, a claim starts with room for one. Beside one in flight, it waits for
            // room for half a batch, so that overlapping claims stay large.
            let least = if claims.is_empty() {
                1
            } else {
                (self.slots.holdable() / 2).clamp(1, CLAIM_BATCH / 2)
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some((claim, result)) = claims.next() => {
                    reserved -= claim.wanted;
                    match result {
                        Ok(claimed) => {
                            failures = 0;
                            drained = claimed.len() < claim.wanted;
                            spawn(&mut tasks, self.hold(claimed, claim.permits), ClaimedVia::Queue, claim.sent);
                        }
                        Err(error) => {
                            failures += 1;
                            let pause = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                            tracing::warn!(%error, retry_in = ?pause, "could not claim deliveries");
                            paused_until = Some(Instant::now() + pause);
                        }
                    }
                }
                Some(Handoff { claimed, slots, sent }) = handed.recv() => {
                    spawn(&mut tasks, slots.assign(claimed), ClaimedVia::Append, sent);
                }
                () = sleep_until(paused_until), if paused_until.is_some() => paused_until = None,
                (open, permits) = self.gather(least, reserved), if may_claim => {
                    let wanted = permits.len();
                    reserved += wanted;
                    let store = self.store.clone();
                    let lease = self.lease();
                    claims.push(Box::pin(async move {
                        let limit = u32::try_from(wanted).unwrap_or(u32::MAX);
                        let sent = Instant::now();
                        let result = store.claim(&open, limit, lease).await;
                        (Claim { permits, wanted, sent }, result)
                    }));
                }
            }
        }
        // Claims already sent may still take leases, and handoffs may be queued; hand
        // those back with the rest. Handoffs that come later are released by ingress.
        self.accepting.store(false, Ordering::Release);
        handed.close();
        while let Some(Handoff { claimed, sent, .. }) = handed.recv().await {
            for delivery in claimed {
                self.in_flight.track(delivery.lease, sent + self.lease());
            }
        }
        while let Some((claim, result)) = claims.next().await {
            for delivery in result.into_iter().flatten() {
                self.in_flight
                    .track(delivery.lease, claim.sent + self.lease());
            }
        }

        let grace = self.settings.shutdown_grace.get();
        tracing::info!(
            in_flight = tasks.len(),
            ?grace,
            "stopping: draining in-flight deliveries"
        );
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                still_running = tasks.len(),
                "grace period over: cancelling handlers"
            );
            handlers_cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        if tokio::time::timeout(Duration::from_secs(10), completer.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "could not record the last results in time; those deliveries will run again"
            );
        }
        background.cancel();
        let leftover = self.in_flight.take();
        if !leftover.is_empty() {
            match self.store.release(&leftover).await {
                Ok(released) => tracing::info!(released, "released unfinished deliveries"),
                Err(error) => {
                    tracing::warn!(%error, "could not release deliveries; their leases will expire")
                }
            }
        }
    }

    /// Waits for a reason to claim again: local ingress, a store notification, the
    /// next scheduled retry, the poll interval, or shutdown. Meanwhile, deliveries
    /// handed off by ingress are started with `start`; they need no claim.
    async fn idle(
        &self,
        open: &[String],
        shutdown: &CancellationToken,
        handed: &mut mpsc::UnboundedReceiver<Handoff>,
        mut start: impl FnMut(Handoff),
    ) {
        let poll = self.settings.poll_interval.get();
        let mut wait = poll;
        if !open.is_empty()
            && let Ok(Some(next)) = self.store.next_run_at(open).await
        {
            wait = wait.min((next - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        }
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                () = self.wake.notified() => return,
                () = tokio::time::sleep_until(until) => return,
                () = shutdown.cancelled() => return,
                Some(handed) = handed.recv() => start(handed),
            }
        }
    }

    /// Waits until a claim may take at least `least` deliveries, then takes the
    /// process's hold slots for as many as it may, up to a batch; returns them with
    /// the triggers to claim for. A claim takes no more than the process and the open
    /// triggers have room to hold, less what the claims in flight (`reserved`) may
    /// bring, so that a trigger with little concurrency does not sit on leases other
    /// processes could run.
    async fn gather(&self, least: usize, reserved: usize) -> (Vec<String>, Vec<Hold>) {
        loop {
            let mut capacity = 0;
            self.slots
                .until(|| {
                    capacity = self
                        .triggers
                        .values()
                        .map(|trigger| trigger.slots.room())
                        .sum::<usize>()
                        .saturating_sub(reserved)
                        .min(self.slots.room())
                        .min(CLAIM_BATCH);
                    capacity >= least
                })
                .await;
            let permits: Vec<Hold> = std::iter::from_fn(|| self.slots.try_hold())
                .take(capacity)
                .collect();
            if !permits.is_empty() {
                return (self.open_triggers(), permits);
            }
        }
    }

    /// Gives each delivery a claim brought back one of the process's hold slots the
    /// claim took, and one of its trigger's. A claim can bring more of a trigger than
    /// it has room for, when claims on append took the room while the claim was on
    /// its way: those go back to the queue at once, so that no trigger holds more than
    /// its `concurrency + prefetch`.
    fn hold(&self, claimed: Vec<Claimed>, permits: Vec<Hold>) -> Vec<Starting> {
        let mut starting = Vec::with_capacity(claimed.len());
        let mut surplus = Vec::new();
        for (delivery, process) in claimed.into_iter().zip(permits) {
            match self.triggers[&delivery.trigger].slots.try_hold() {
                Some(trigger) => starting.push((delivery, Held::new(process, trigger), None)),
                None => surplus.push(delivery.lease),
            }
        }
        if !surplus.is_empty() {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(error) = store.release(&surplus).await {
                    tracing::warn!(%error, count = surplus.len(), "could not release deliveries claimed past their trigger's room; their leases will expire");
                }
            });
        }
        starting
    }

    /// Runs one delivery this process holds: waits for its run slots, starts it only
    /// while its lease is held for [`Dispatcher::start_margin`] more, and hands the
    /// result to the completer. Gives the delivery back unstarted when shutdown comes
    /// or its lease is lost first.
    async fn deliver(
        self: Arc<Self>,
        claimed: Claimed,
        held: Held,
        running: Option<Running>,
        completer: Completer,
        shutdown: CancellationToken,
        stop: Stop,
    ) {
        let lease = claimed.lease;
        let trigger = self.triggers[&claimed.trigger].clone();
        let running = match running {
            Some(running) => running,
            None => tokio::select! {
                running = Running::take(&trigger.slots, &self.slots) => running,
                () = shutdown.cancelled() => return self.give_back(lease).await,
                () = stop.lost.cancelled() => return self.give_back(lease).await,
            },
        };
        if !self.in_flight.holds_for(&lease, self.start_margin()) {
            tracing::warn!(
                trigger = %trigger.name,
                delivery = lease.delivery_id,
                "not starting a delivery whose lease may have run out (this process was paused, or could not renew it); it is given back to run again"
            );
            return self.give_back(lease).await;
        }
        let finished = self.execute(&trigger, claimed, &stop).await;
        // The handler is done, so its slots go to the next claim while the result
        // commits; the lease stays in flight (and heartbeated) until the completer has
        // recorded it. While the completer's queue is full the slots are kept, which
        // slows claims to the rate results are recorded.
        // A retried delivery is pending again, and an ordered one may let the next of its
        // key run: the loop (perhaps idle) looks for work once the result is recorded.
        let wakes = trigger.ordered || finished.outcome == AttemptOutcome::Retry;
        self.in_flight.finishing(&lease);
        completer.submit(finished, wakes).await;
        drop((running, held));
    }

    /// How long a lease must still be held for its delivery to start. Heartbeats renew
    /// leases every third of their length, so a live one always has more.
    fn start_margin(&self) -> Duration {
        self.lease() / 4
    }

    /// Gives a held delivery back without running it: stops tracking its lease and
    /// releases it. The release is fenced by the token, so a lease another process
    /// has taken over is left alone.
    async fn give_back(&self, lease: Lease) {
        self.in_flight.remove([lease]);
        if let Err(error) = self.store.release(&[lease]).await {
            tracing::warn!(%error, delivery = lease.delivery_id, "could not give a delivery back; it runs again once its lease expires");
        }
    }

    /// Runs one attempt of a claimed delivery and decides what follows. The event
    /// moves into the handler.
    async fn execute(&self, trigger: &TriggerRuntime, claimed: Claimed, stop: &Stop) -> Finished {
        let span = tracing::info_span!(
            "delivery",
            trigger = %trigger.name,
            event = %claimed.event.switchyard_id,
            delivery = claimed.lease.delivery_id,
            attempt = claimed.attempt,
        );
        let started_at = Utc::now();
        let started = Instant::now();
        let deadline = started + trigger.timeout;
        let ctx = Context {
            trigger: trigger.name.clone(),
            source: Arc::from(claimed.event.source_name.as_str()),
            delivery_id: claimed.lease.delivery_id,
            attempt: claimed.attempt,
            deadline,
            cancellation: stop.cancel.clone(),
            span: span.clone(),
            resources: self.resources.clone(),
            output: Output::default(),
        };
        let output = ctx.output.clone();
        let result = if claimed.attempt > trigger.retry.max_attempts {
            // Attempts beyond the policy can only come from abandoned ones: a handler that
            // kills its worker (abort, OOM) would otherwise crash-loop every process.
            Err(HandlerError::fatal(format!(
                "not run: attempt {} exceeds max_attempts ({}) after abandoned attempts",
                claimed.attempt, trigger.retry.max_attempts
            )))
        } else {
            let call = trigger.handler.handle(ctx, claimed.event);
            let bounded = attempt::with_deadline(
                attempt::catch_panic(call),
                deadline,
                trigger.timeout,
                &stop.cancel,
            );
            attempt::until_lease_lost(bounded, &stop.lost, &stop.cancel)
                .instrument(span.clone())
                .await
        };
        let elapsed = started.elapsed();
        let mut verdict = attempt::decide(
            &result,
            claimed.attempt,
            &trigger.retry,
            claimed.created_at,
            Utc::now(),
            &mut rand::rng(),
        );
        // A command's stderr or a receiver's answer may quote a secret; the error is
        // logged and stored, so it is cleared of them first, as the output is.
        verdict.error = verdict.error.map(|error| trigger.redactor.redact(error));
        span.in_scope(|| match (&verdict.outcome, &verdict.error) {
            (AttemptOutcome::Succeeded, _) => tracing::debug!(?elapsed, "delivered"),
            (AttemptOutcome::Retry, Some(error)) => {
                tracing::info!(%error, retry_at = ?verdict.retry_at, "attempt failed; will retry")
            }
            (_, error) => tracing::warn!(error = error.as_deref().unwrap_or(""), "dead-lettered"),
        });
        trigger
            .metrics
            .attempt_finished(verdict.outcome, elapsed.as_secs_f64());
        Finished {
            lease: claimed.lease,
            attempt: claimed.attempt,
            started_at,
            duration_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            outcome: verdict.outcome,
            retry_at: verdict.retry_at,
            error: verdict.error,
            output: output.take().map(|text| trigger.redactor.redact(text)),
        }
    }

    /// Claims and runs one runnable delivery to completion, recording its attempt.
    /// `None` when nothing is runnable. Used by the test kit.
    pub async fn run_next(&self) -> Result<Option<Executed>, switchyard_store::StoreError> {
        let Some(claimed) = self
            .store
            .claim(&self.trigger_names, 1, self.lease())
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let trigger = self.triggers[&claimed.trigger].clone();
        let stop = Stop {
            lost: CancellationToken::new(),
            cancel: CancellationToken::new(),
        };
        let finished = self.execute(&trigger, claimed.clone(), &stop).await;
        let verdict = Verdict {
            outcome: finished.outcome,
            retry_at: finished.retry_at,
            error: finished.error.clone(),
        };
        let recorded = self
            .store
            .finish(std::slice::from_ref(&finished))
            .await?
            .first()
            .copied()
            .unwrap_or(false);
        Ok(Some(Executed {
            claimed,
            verdict,
            recorded,
            output: finished.output,
        }))
    }

    /// For each trigger: its deliveries running in this process, and those held here
    /// waiting for a slot. For `/metrics`.
    pub fn occupancy(&self) -> Vec<Occupancy> {
        self.trigger_names
            .iter()
            .map(|name| {
                let slots = &self.triggers[name].slots;
                Occupancy {
                    trigger: name.clone(),
                    running: slots.running(),
                    waiting: slots.waiting(),
                }
            })
            .collect()
    }

    /// The triggers with room for another delivery.
    fn open_triggers(&self) -> Vec<String> {
        self.trigger_names
            .iter()
            .filter(|name| self.triggers[*name].slots.room() > 0)
            .cloned()
            .collect()
    }

    /// Renews every held lease each third of the lease length, and stops the
    /// deliveries whose lease is lost: taken over by another process, or run out
    /// before it could be renewed (this process was paused, or the store unreachable).
    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let every = self.lease() / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            let sent = Instant::now();
            let (leases, expired) = self.in_flight.due(sent);
            if expired.expired > 0 {
                tracing::warn!(
                    lost = expired.expired,
                    "leases ran out before they could be renewed (this process was paused, or could not reach the store); their deliveries stop here and run again"
                );
            }
            if leases.is_empty() {
                continue;
            }
            match self.store.heartbeat(&leases, self.lease()).await {
                Ok(held) => {
                    let lost = self.in_flight.renewed(&leases, &held, sent + self.lease());
                    if lost.taken > 0 {
                        tracing::warn!(
                            lost = lost.taken,
                            held = leases.len() - lost.taken,
                            "some leases were taken over by another process; their deliveries stop here"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "heartbeat failed"),
            }
        }
    }

    async fn reclaim(self: Arc<Self>, stop: CancellationToken) {
        let every = (self.lease() / 2).max(Duration::from_millis(100));
        loop {
            match self.store.reclaim_expired().await {
                Ok(0) => {}
                Ok(count) => {
                    tracing::warn!(
                        count,
                        "reclaimed deliveries whose worker stopped heartbeating"
                    );
                    self.wake.notify_one();
                }
                Err(error) => tracing::warn!(%error, "could not reclaim expired leases"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Forwards the store's cross-process wake-ups to the dispatcher.
async fn listen(store: Arc<dyn Store>, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            result = store.wait_for_work() => match result {
                Ok(()) => wake.notify_one(),
                Err(error) => {
                    tracing::debug!(%error, "store notifications interrupted; polling meanwhile");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => return,
                    }
                }
            },
            () = stop.cancelled() => return,
        }
    }
}
