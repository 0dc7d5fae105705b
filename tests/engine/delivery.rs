//! Dispatch scenarios: once-only delivery, dedupe, retries, dead letters, replay,
//! leases held by slow handlers, ordering and fan-out — each against SQLite and Postgres.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard::{Context, Engine, Event, HandlerError, handler_fn};
use switchyard_store::{AttemptOutcome, DeadQuery, DeliveryStatus, EventQuery, Store};
use uuid::Uuid;

use crate::both_backends;
use crate::support::{Backend, eventually, fresh_store, metrics, post_json, start};

const WAIT: Duration = Duration::from_secs(20);

/// Records every event a handler saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Event)>>>);

impl Seen {
    fn record(&self, ctx: &Context, event: &Event) {
        self.0
            .lock()
            .unwrap()
            .push((ctx.trigger().to_owned(), event.clone()));
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn all(&self) -> Vec<(String, Event)> {
        self.0.lock().unwrap().clone()
    }
}

fn recorder(seen: &Seen) -> impl switchyard::Handler {
    let seen = seen.clone();
    handler_fn(move |ctx: Context, event: Event| {
        let seen = seen.clone();
        async move {
            seen.record(&ctx, &event);
            Ok(())
        }
    })
}

async fn delivery_statuses(
    store: &Arc<dyn Store>,
    id: Uuid,
) -> Vec<(String, DeliveryStatus, Vec<AttemptOutcome>)> {
    let detail = store.get_event(id).await.unwrap().expect("event exists");
    detail
        .deliveries
        .into_iter()
        .map(|d| {
            (
                d.trigger,
                d.status,
                d.attempt_log.into_iter().map(|a| a.outcome).collect(),
            )
        })
        .collect()
}

async fn wait_for_status(
    store: &Arc<dyn Store>,
    id: Uuid,
    status: DeliveryStatus,
) -> Vec<AttemptOutcome> {
    eventually(WAIT, "the delivery to settle", || async {
        let deliveries = delivery_statuses(store, id).await;
        deliveries
            .iter()
            .find(|(_, s, _)| *s == status)
            .map(|(_, _, attempts)| attempts.clone())
    })
    .await
}

fn event_id(body: &Value) -> Uuid {
    body["id"]
        .as_str()
        .expect("an id in the answer")
        .parse()
        .expect("a uuid")
}

const ONE_TRIGGER: &str = r#"
sources: { orders: { http: { path: /orders } } }
triggers:
  record: { source: orders, handler: record, retry: { max_attempts: 3, initial: 10ms, jitter: none } }
"#;

async fn post_runs_the_handler_once_with_the_envelope(backend: Backend) {
    let seen = Seen::default();
    let store = fresh_store(backend).await;
    let engine = start(
        Engine::from_cli().handler("record", recorder(&seen)),
        ONE_TRIGGER,
        &store,
    )
    .await;
    let response = post_json(
        engine.local_addr(),
        "/orders?x=1",
        json!({"total": 12}),
        &[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )],
    )
    .await;
    assert_eq!(response.status(), 202);
    let id = event_id(&response.json().await.unwrap());
    wait_for_status(engine.store(), id, DeliveryStatus::Succeeded).await;
    let seen_events = seen.all();
    assert_eq!(seen_events.len(), 1, "handled exactly once");
    let (trigger, event) = &seen_events[0];
    assert_eq!(trigger, "record");
    assert_eq!(event.switchyard_id, id);
    assert_eq!(event.specversion, "1.0");
    assert_eq!(event.ty, "http.request");
    assert_eq!(event.source, "/orders");
    assert_eq!(event.source_name, "orders");
    assert_eq!(
        event.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    let data = event.data.as_ref().unwrap();
    assert_eq!(data["body"], json!({"total": 12}));
    assert_eq!(data["method"], "POST");
    assert_eq!(data["query"], json!({"x": "1"}));
    engine.shutdown().await;
}

async fn a_duplicate_post_makes_one_event(backend: Backend) {
    let seen = Seen::default();
    let store = fresh_store(backend).await;
    let engine = start(
        Engine::from_cli().handler("record", recorder(&seen)),
        ONE_TRIGGER,
        &store,
    )
    .await;
    let key = [("Idempotency-Key", "order-77")];
    let first = post_json(engine.local_addr(), "/orders", json!({"n": 1}), &key).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let second = post_json(engine.local_addr(), "/orders", json!({"n": 2}), &key).await;
    assert!(second.status().is_success());
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        first["id"], second["id"],
        "the duplicate answers with the original id"
    );
    assert_eq!(second["duplicate"], true);
    wait_for_status(engine.store(), event_id(&first), DeliveryStatus::Succeeded).await;
    let events = engine
        .store()
        .list_events(&EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(seen.len(), 1);
    engine.shutdown().await;
}

fn flaky(failures: u32, fatal: bool) -> (impl switchyard::Handler, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let handler = handler_fn(move |_ctx: Context, _event: Event| {
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= failures {
                return Err(if fatal {
                    HandlerError::fatal(format!("bad input {n}"))
                } else {
                    HandlerError::retryable(format!("flaky {n}"))
                });
            }
            Ok(())
        }
    });
    (handler, calls)
}

async fn failing_twice_then_succeeding_records_three_attempts(backend: Backend) {
    let (handler, calls) = flaky(2, false);
    let store = fresh_store(backend).await;
    let engine = start(
        Engine::from_cli().handler("record", handler),
        ONE_TRIGGER,
        &store,
    )
    .await;
    let response = post_json(engine.local_addr(), "/orders", json!({}), &[]).await;
    let id = event_id(&response.json().await.unwrap());
    let attempts = wait_for_status(engine.store(), id, DeliveryStatus::Succeeded).await;
    assert_eq!(
        attempts,
        [
            AttemptOutcome::Retry,
            AttemptOutcome::Retry,
            AttemptOutcome::Succeeded
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let detail = engine.store().get_event(id).await.unwrap().unwrap();
    let log = &detail.deliveries[0].attempt_log;
    assert_eq!(log[0].error.as_deref(), Some("flaky 1"));
    assert_eq!(log.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    engine.shutdown().await;
}

/// A retry runs when its backoff is over, not at the next poll: recording a retry
/// wakes the dispatcher, which then sleeps until the retry is due. The poll here is an
/// hour, so a missing wake-up fails the test instead of slowing it.
async fn a_retry_runs_when_due_without_waiting_for_the_poll(backend: Backend) {
    const NO_POLL: &str = r#"
dispatcher: { poll_interval: 1h }
sources: { orders: { http: { path: /orders } } }
triggers:
  record: { source: orders, handler: record, retry: { max_attempts: 3, initial: 50ms, jitter: none } }
"#;
    let (handler, calls) = flaky(1, false);
    let store = fresh_store(backend).await;
    let engine = start(
        Engine::from_cli().handler("record", handler),
        NO_POLL,
        &store,
    )
    .await;
    let response = post_json(engine.local_addr(), "/orders", json!({}), &[]).await;
    let id = event_id(&response.json().await.unwrap());
    let attempts = wait_for_status(engine.store(), id, DeliveryStatus::Succeeded).await;
    assert_eq!(attempts, [AttemptOutcome::Retry, AttemptOutcome::Succeeded]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    engine.shutdown().await;
}

async fn always_failing_is_dead_after_max_attempts(backend: Backend) {
    let (handler, calls) = flaky(u32::MAX, false);
    let store = fresh_store(backend).await;
    let engine = start(
        Engine::from_cli().handler("record", handler),
        ONE_TRIGGER,
        &store,
    )
    .await;
    let response = post_json(engine.local_addr(), "/orders", json!({}), &[]).await;
    let id = event_id(&response.json().await.unwrap());
    let attempts = wait_for_status(engine.store(), id, DeliveryStatus::Dead).await;
    assert_eq!(
        attempts,
        [
            AttemptOutcome::Retry,
            AttemptOutcome::Retry,
            AttemptOutcome::Dead
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let dead = engine
        .store()
        .list_dead(&DeadQuery {
            limit: 10,
            ..DeadQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("gave up after 3 attempts: flaky 3")
    );
    engine.shutdown().await;
}

async fn a_fatal_error_is_dead_after_one_attempt_and_replay_delivers(backend: Backend) {
    let (handler, calls) = flaky(1, true);
    let store = fresh_store(backend).await;
    let engine = start(
        Engine::from_cli().handler("record", handler),
        ONE_TRIGGER,
        &store,
    )
    .await;
    let response = post_json(engine.local_addr(), "/orders", json!({}), &[]).await;
    let id = event_id(&response.json().await.unwrap());
    let attempts = wait_for_status(engine.store(), id, DeliveryStatus::Dead).await;
    assert_eq!(attempts, [AttemptOutcome::Dead]);
    let dead = engine
        .store()
        .list_dead(&DeadQuery {
            limit: 10,
            ..DeadQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(dead[0].last_error.as_deref(), Some("fatal: bad input 1"));

    // `dlq replay` is the same store call; the CLI path is covered in crash.rs.
    let replayed = engine
        .store()
        .replay_dead(&[dead[0].delivery_id])
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);
    eventually(WAIT, "the replayed delivery to succeed", || async {
        let statuses = delivery_statuses(engine.store(), id).await;
        statuses
            .iter()
            .any(|(_, s, _)| *s == DeliveryStatus::Succeeded)
            .then_some(())
    })
    .await;
    let statuses: Vec<DeliveryStatus> = delivery_statuses(engine.store(), id)
        .await
        .into_iter()
        .map(|(_, s, _)| s)
        .collect();
    assert_eq!(
        statuses,
        [DeliveryStatus::Replayed, DeliveryStatus::Succeeded]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        engine
            .store()
            .list_dead(&DeadQuery {
                limit: 10,
                ..DeadQuery::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    engine.shutdown().await;
}

async fn fans_out_to_three_triggers(backend: Backend) {
    let seen = Seen::default();
    let yaml = r#"
sources: { orders: { http: { path: /orders } } }
triggers:
  a: { source: orders, handler: record }
  b: { source: orders, handler: record }
  c: { source: orders, handler: record, filter: { data.body.kind: paid } }
  not-me: { source: orders, handler: record, filter: { data.body.kind: refund } }
"#;
    let store = fresh_store(backend).await;
    let engine = start(
        Engine::from_cli().handler("record", recorder(&seen)),
        yaml,
        &store,
    )
    .await;
    let response = post_json(engine.local_addr(), "/orders", json!({"kind": "paid"}), &[]).await;
    let id = event_id(&response.json().await.unwrap());
    eventually(WAIT, "three deliveries", || async {
        (seen.len() >= 3).then_some(())
    })
    .await;
    let mut triggers: Vec<String> = seen
        .all()
        .into_iter()
        .map(|(t, e)| {
            assert_eq!(e.switchyard_id, id);
            t
        })
        .collect();
    triggers.sort();
    assert_eq!(triggers, ["a", "b", "c"]);
    let deliveries = delivery_statuses(engine.store(), id).await;
    assert_eq!(
        deliveries.len(),
        3,
        "no delivery for the trigger whose filter fails"
    );
    engine.shutdown().await;
}

/// `switchyard_deliveries_claimed_total` for one trigger and way of claiming.
async fn claimed_via(addr: std::net::SocketAddr, trigger: &str, via: &str) -> u64 {
    let text = metrics(addr).await;
    let series =
        format!("switchyard_deliveries_claimed_total{{trigger=\"{trigger}\",via=\"{via}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |count| count.parse().expect("a counter value"))
}

/// While its trigger has a free slot, an event's delivery is claimed by the append
/// that creates it and started at once; once the trigger is full, deliveries wait in
/// the queue and are claimed from there as slots free up.
/// Heartbeats extend the lease of a delivery in flight until its result is recorded,
/// so a handler that runs for several lease periods is neither reclaimed nor run twice.
async fn a_handler_slower_than_its_lease_keeps_it(backend: Backend) {
    const SLOW: &str = r#"
dispatcher: { lease: 1s }
sources: { orders: { http: { path: /orders } } }
triggers:
  record: { source: orders, handler: record, timeout: 10s, retry: { max_attempts: 3, initial: 10ms, jitter: none } }
"#;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let handler = handler_fn(move |_ctx: Context, _event: Event| {
        let calls = counted.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Ok(())
        }
    });
    let store = fresh_store(backend).await;
    let engine = start(Engine::from_cli().handler("record", handler), SLOW, &store).await;
    let response = post_json(engine.local_addr(), "/orders", json!({}), &[]).await;
    let id = event_id(&response.json().await.unwrap());
    let attempts = wait_for_status(engine.store(), id, DeliveryStatus::Succeeded).await;
    assert_eq!(attempts, [AttemptOutcome::Succeeded]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    engine.shutdown().await;
}

async fn a_busy_trigger_queues_what_it_cannot_start(backend: Backend) {
    let started = Arc::new(AtomicU32::new(0));
    let running = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let (started, running, most, gate) =
            (started.clone(), running.clone(), most.clone(), gate.clone());
        handler_fn(move |_ctx: Context, _event: Event| {
            let (started, running, most, gate) =
                (started.clone(), running.clone(), most.clone(), gate.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                gate.acquire().await.expect("open").forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let yaml = r#"
sources: { orders: { http: { path: /orders } } }
triggers:
  gated: { source: orders, handler: gated, concurrency: 2 }
"#;
    let store = fresh_store(backend).await;
    let engine = start(Engine::from_cli().handler("gated", handler), yaml, &store).await;
    let addr = engine.local_addr();
    let mut ids = Vec::new();
    for n in 1..=2 {
        let response = post_json(addr, "/orders", json!({"n": n}), &[]).await;
        assert_eq!(response.status(), 202);
        ids.push(event_id(&response.json().await.unwrap()));
        eventually(WAIT, "the handler to start", || async {
            (started.load(Ordering::SeqCst) == n).then_some(())
        })
        .await;
    }
    assert_eq!(claimed_via(addr, "gated", "append").await, 2);
    for n in 3..=4 {
        let response = post_json(addr, "/orders", json!({"n": n}), &[]).await;
        assert_eq!(response.status(), 202);
        ids.push(event_id(&response.json().await.unwrap()));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "a third handler started past the trigger's concurrency"
    );

    gate.add_permits(4);
    for id in &ids {
        let attempts = wait_for_status(engine.store(), *id, DeliveryStatus::Succeeded).await;
        assert_eq!(attempts, vec![AttemptOutcome::Succeeded]);
    }
    assert_eq!(started.load(Ordering::SeqCst), 4, "each event handled once");
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert_eq!(claimed_via(addr, "gated", "append").await, 2);
    assert_eq!(claimed_via(addr, "gated", "queue").await, 2);
    engine.shutdown().await;
}

/// `switchyard_deliveries_held` for one trigger: (running, waiting).
async fn held_here(addr: std::net::SocketAddr, trigger: &str) -> (u64, u64) {
    let text = metrics(addr).await;
    let gauge = |state: &str| {
        let series =
            format!("switchyard_deliveries_held{{trigger=\"{trigger}\",state=\"{state}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |count| count.parse().expect("a gauge value"))
    };
    (gauge("running"), gauge("waiting"))
}

/// A busy trigger's deliveries, counted by status: (running, pending).
async fn running_and_pending(store: &Arc<dyn Store>, ids: &[Uuid]) -> (usize, usize) {
    let mut counts = (0, 0);
    for id in ids {
        for (_, status, _) in delivery_statuses(store, *id).await {
            match status {
                DeliveryStatus::Running => counts.0 += 1,
                DeliveryStatus::Pending => counts.1 += 1,
                _ => {}
            }
        }
    }
    counts
}

/// With six deliveries and a trigger of `concurrency: 2` whose handlers are blocked,
/// the process holds two running plus `prefetch` claimed ahead: those wait for a
/// slot, and the rest stay pending for other processes. All six then run once.
async fn a_busy_trigger_holds_what_its_prefetch_allows(
    backend: Backend,
    prefetch: u32,
    held: usize,
) {
    let started = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let (started, gate) = (started.clone(), gate.clone());
        handler_fn(move |_ctx: Context, _event: Event| {
            let (started, gate) = (started.clone(), gate.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("open").forget();
                Ok(())
            }
        })
    };
    let yaml = format!(
        r#"
dispatcher: {{ prefetch: {prefetch} }}
sources: {{ orders: {{ http: {{ path: /orders }} }} }}
triggers:
  gated: {{ source: orders, handler: gated, concurrency: 2 }}
"#
    );
    let store = fresh_store(backend).await;
    let engine = start(Engine::from_cli().handler("gated", handler), &yaml, &store).await;
    let addr = engine.local_addr();
    let mut ids = Vec::new();
    for n in 0..6 {
        let response = post_json(addr, "/orders", json!({ "n": n }), &[]).await;
        assert_eq!(response.status(), 202);
        ids.push(event_id(&response.json().await.unwrap()));
    }
    eventually(WAIT, "the claims to settle", || async {
        (running_and_pending(engine.store(), &ids).await == (held, 6 - held)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        running_and_pending(engine.store(), &ids).await,
        (held, 6 - held),
        "the process claimed past its prefetch"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "a prefetched delivery started past the trigger's concurrency"
    );
    assert_eq!(
        held_here(addr, "gated").await,
        (2, held as u64 - 2),
        "/metrics shows what the process runs and holds"
    );

    gate.add_permits(6);
    for id in &ids {
        let attempts = wait_for_status(engine.store(), *id, DeliveryStatus::Succeeded).await;
        assert_eq!(attempts, vec![AttemptOutcome::Succeeded]);
    }
    assert_eq!(started.load(Ordering::SeqCst), 6, "each event handled once");
    engine.shutdown().await;
}

async fn a_busy_trigger_claims_its_concurrency_ahead(backend: Backend) {
    a_busy_trigger_holds_what_its_prefetch_allows(backend, 2, 4).await;
}

async fn without_prefetch_a_busy_trigger_claims_nothing_ahead(backend: Backend) {
    a_busy_trigger_holds_what_its_prefetch_allows(backend, 0, 2).await;
}

async fn per_key_ordering_holds_under_concurrency(backend: Backend) {
    // Per key: the order handled, and whether two ran at once. Key "k0" fails its first
    // event twice: it must block only itself.
    let order: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
    let overlaps = Arc::new(AtomicU32::new(0));
    let k0_failures = Arc::new(AtomicU32::new(0));
    let handler = {
        let (order, running, overlaps, k0_failures) = (
            order.clone(),
            running.clone(),
            overlaps.clone(),
            k0_failures.clone(),
        );
        handler_fn(move |_ctx: Context, event: Event| {
            let (order, running, overlaps, k0_failures) = (
                order.clone(),
                running.clone(),
                overlaps.clone(),
                k0_failures.clone(),
            );
            async move {
                let body = &event.data.as_ref().unwrap()["body"];
                let key = body["key"].as_str().unwrap().to_owned();
                let seq = body["seq"].as_u64().unwrap();
                if std::mem::replace(
                    running.lock().unwrap().entry(key.clone()).or_default(),
                    true,
                ) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
                running.lock().unwrap().insert(key.clone(), false);
                if key == "k0" && seq == 0 && k0_failures.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(HandlerError::retryable("k0 head fails"));
                }
                order.lock().unwrap().entry(key).or_default().push(seq);
                Ok(())
            }
        })
    };
    // An hour's poll: each next event of a key runs because the finish of the one
    // before woke the dispatcher.
    let yaml = r#"
dispatcher: { poll_interval: 1h }
sources: { orders: { http: { path: /orders } } }
triggers:
  ordered:
    source: orders
    handler: ordered
    concurrency: 8
    ordering: { key: data.body.key }
    retry: { max_attempts: 5, initial: 200ms, jitter: none }
"#;
    let store = fresh_store(backend).await;
    let engine = start(Engine::from_cli().handler("ordered", handler), yaml, &store).await;
    let addr = engine.local_addr();
    const KEYS: u64 = 4;
    const PER_KEY: u64 = 8;
    for seq in 0..PER_KEY {
        let posts = (0..KEYS).map(|k| {
            post_json(
                addr,
                "/orders",
                json!({"key": format!("k{k}"), "seq": seq}),
                &[],
            )
        });
        for response in futures::future::join_all(posts).await {
            assert_eq!(response.status(), 202);
        }
    }
    eventually(WAIT, "every event handled", || async {
        let done: usize = order.lock().unwrap().values().map(Vec::len).sum();
        (done == (KEYS * PER_KEY) as usize).then_some(())
    })
    .await;
    let order = order.lock().unwrap().clone();
    for (key, seqs) in &order {
        assert_eq!(
            seqs,
            &(0..PER_KEY).collect::<Vec<_>>(),
            "key {key} handled out of order"
        );
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two events of one key ran at once"
    );
    assert_eq!(
        k0_failures.load(Ordering::SeqCst),
        3,
        "k0's head failed twice, then succeeded"
    );
    assert_eq!(
        claimed_via(addr, "ordered", "append").await,
        0,
        "an ordered delivery is never started without a claim"
    );
    engine.shutdown().await;
}

both_backends!(
    post_runs_the_handler_once_with_the_envelope,
    a_duplicate_post_makes_one_event,
    failing_twice_then_succeeding_records_three_attempts,
    a_retry_runs_when_due_without_waiting_for_the_poll,
    always_failing_is_dead_after_max_attempts,
    a_fatal_error_is_dead_after_one_attempt_and_replay_delivers,
    fans_out_to_three_triggers,
    a_busy_trigger_queues_what_it_cannot_start,
    a_busy_trigger_claims_its_concurrency_ahead,
    without_prefetch_a_busy_trigger_claims_nothing_ahead,
    a_handler_slower_than_its_lease_keeps_it,
    per_key_ordering_holds_under_concurrency,
);
