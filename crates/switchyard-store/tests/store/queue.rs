//! Scenarios for the queue: append and dedupe, claims, leases, retries and ordering.
//! Each is written once and run on both backends (see `both_backends!` in `store.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use switchyard_store::{Appended, AttemptOutcome, DeliveryStatus, Lease, NewEvent, Store};
use uuid::Uuid;

use crate::support::*;

pub async fn append_dedupes_within_and_across_batches(store: Arc<dyn Store>) {
    let first = event("github", "push").with_dedupe_key("delivery-1");
    let same_key = event("github", "push").with_dedupe_key("delivery-1");
    let other_source = event("gitlab", "push").with_dedupe_key("delivery-1");
    let no_key = event("github", "push");
    let appended = store
        .append(&[
            to(&first, &["t1"]),
            to(&same_key, &["t1"]),
            to(&other_source, &["t1"]),
            to(&no_key, &["t1", "t2"]),
        ])
        .await
        .unwrap();
    assert_eq!(
        appended,
        vec![
            Appended::Created(first.switchyard_id),
            Appended::Duplicate(first.switchyard_id),
            Appended::Created(other_source.switchyard_id),
            Appended::Created(no_key.switchyard_id),
        ]
    );

    let again = event("github", "push").with_dedupe_key("delivery-1");
    let appended = store
        .append(&[
            to(&again, &["t1", "t2"]),
            to(&first, &["t1"]),
            to(&no_key, &["t1"]),
        ])
        .await
        .unwrap();
    assert_eq!(
        appended,
        vec![
            Appended::Duplicate(first.switchyard_id),
            Appended::Duplicate(first.switchyard_id),
            Appended::Duplicate(no_key.switchyard_id)
        ]
    );

    assert!(
        store
            .get_event(same_key.switchyard_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_event(again.switchyard_id)
            .await
            .unwrap()
            .is_none()
    );
    let claimed = claim(&store, &["t1", "t2"], 100).await;
    let mut got: Vec<(Uuid, String)> = claimed
        .iter()
        .map(|c| (c.event.switchyard_id, c.trigger.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (first.switchyard_id, "t1".to_owned()),
        (other_source.switchyard_id, "t1".to_owned()),
        (no_key.switchyard_id, "t1".to_owned()),
        (no_key.switchyard_id, "t2".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want, "duplicates must not create deliveries");
}

pub async fn append_round_trips_every_event_field(store: Arc<dyn Store>) {
    let mut full = event("orders", "order.created")
        .with_subject("order/42")
        .with_json(json!({
            "id": 42,
            "lines": [{"sku": "a", "qty": 2, "price": 19.5}],
            "note": null,
            "text": "naïve \"quoted\" ✓\n",
        }))
        .with_dedupe_key("order-42");
    full.partitionkey = Some("customer-7".to_owned());
    full.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
    full.time = micros(Utc::now() - TimeDelta::hours(3));
    full.id = "producer-42".to_owned();
    full.dataschema = Some("https://schemas.example/order.json".to_owned());
    full.extensions = [
        ("tenant".to_owned(), json!("acme ✓")),
        ("priority".to_owned(), json!(3)),
        ("urgent".to_owned(), json!(true)),
    ]
    .into();
    let mut binary = event("blobs", "blob.put");
    binary.datacontenttype = Some("application/octet-stream".to_owned());
    binary.data_base64 = Some("AAEC".to_owned());
    store
        .append(&[to(&full, &["t"]), to(&binary, &["t"])])
        .await
        .unwrap();

    let claimed = claim(&store, &["t"], 10).await;
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].event, full);
    assert_eq!(claimed[1].event, binary);
    let detail = store
        .get_event(full.switchyard_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(detail.event, full);
    assert_eq!(detail.dedupe_key.as_deref(), Some("order-42"));
    assert_eq!(detail.source_name, "orders");
    assert_eq!(detail.received_at, full.received_at);
    let between = store
        .events_between(
            full.received_at,
            Utc::now() + TimeDelta::hours(1),
            Some("orders"),
            None,
            0,
        )
        .await
        .unwrap();
    assert_eq!(between, vec![full]);
    let generated = store
        .get_event(binary.switchyard_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        generated.event.id,
        binary.switchyard_id.to_string(),
        "an event without a CloudEvents id of its own keeps its generated one"
    );
    assert!(generated.event.extensions.is_empty());
}

pub async fn append_keeps_the_first_of_two_entries_with_one_id(store: Arc<dyn Store>) {
    let event = event("s", "x");
    let appended = store
        .append(&[to(&event, &["first"]), to(&event, &["second"])])
        .await
        .unwrap();
    assert_eq!(
        appended,
        vec![
            Appended::Created(event.switchyard_id),
            Appended::Duplicate(event.switchyard_id)
        ]
    );
    let claimed = claim(&store, &["first", "second"], 10).await;
    let triggers: Vec<&str> = claimed.iter().map(|c| c.trigger.as_str()).collect();
    assert_eq!(
        triggers,
        vec!["first"],
        "the repeated entry adds no delivery"
    );
}

/// More rows than one statement may bind on SQLite (13 columns of 3,000 events are
/// 39,000 parameters, over its 32,766).
pub async fn append_takes_a_batch_larger_than_one_insert(store: Arc<dyn Store>) {
    let events: Vec<_> = (0..3_000).map(|_| event("s", "x")).collect();
    let batch: Vec<NewEvent> = events.iter().map(|e| to(e, &["t"])).collect();
    let appended = store.append(&batch).await.unwrap();
    let want: Vec<Appended> = events
        .iter()
        .map(|e| Appended::Created(e.switchyard_id))
        .collect();
    assert_eq!(appended, want);
    let claimed = claim(&store, &["t"], 4_000).await;
    let order: Vec<Uuid> = claimed.iter().map(|c| c.event.switchyard_id).collect();
    let batch_order: Vec<Uuid> = events.iter().map(|e| e.switchyard_id).collect();
    assert_eq!(
        order, batch_order,
        "one delivery each, created in batch order"
    );
}

pub async fn append_claiming_creates_claimed_deliveries(store: Arc<dyn Store>) {
    let first = event("s", "x").with_dedupe_key("k");
    let duplicate = event("s", "x").with_dedupe_key("k");
    let mut item = to(&first, &["now", "later"]);
    item.deliveries[0].claim = true;
    let mut ordered = keyed(&first, "ordered", "key-1");
    ordered.deliveries[0].claim = true;
    item.deliveries.extend(ordered.deliveries);
    let mut again = to(&duplicate, &["now"]);
    again.deliveries[0].claim = true;

    let (appended, claimed) = store
        .append_claiming(&[item, again], SHORT_LEASE * 200)
        .await
        .unwrap();
    assert_eq!(
        appended,
        vec![
            Appended::Created(first.switchyard_id),
            Appended::Duplicate(first.switchyard_id)
        ]
    );
    assert_eq!(
        claimed.len(),
        1,
        "only the unordered delivery of the new event"
    );
    let handed = &claimed[0];
    assert_eq!((handed.trigger.as_str(), handed.attempt), ("now", 1));
    assert_eq!(handed.event, first);
    assert!(handed.claimed_at >= handed.created_at);

    assert!(
        claim(&store, &["now"], 10).await.is_empty(),
        "a delivery claimed on append is not claimed again"
    );
    let queued = claim(&store, &["later", "ordered"], 10).await;
    let mut triggers: Vec<&str> = queued.iter().map(|c| c.trigger.as_str()).collect();
    triggers.sort_unstable();
    assert_eq!(
        triggers,
        vec!["later", "ordered"],
        "unmarked and ordered deliveries stay pending"
    );

    assert_eq!(
        store.heartbeat(&[handed.lease], LEASE).await.unwrap(),
        [true],
        "the lease is live"
    );
    let accepted = store
        .finish(&[finished(handed, AttemptOutcome::Succeeded, None, None)])
        .await
        .unwrap();
    assert_eq!(accepted, vec![true]);
    let delivery = store
        .get_delivery(handed.lease.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            delivery.status,
            delivery.attempts,
            delivery.attempt_log.len()
        ),
        (DeliveryStatus::Succeeded, 1, 1)
    );

    // Released (shutdown before it started), it is an ordinary pending delivery.
    let second = event("s", "x");
    let mut item = to(&second, &["now"]);
    item.deliveries[0].claim = true;
    let (_, claimed) = store.append_claiming(&[item], LEASE).await.unwrap();
    assert_eq!(store.release(&[claimed[0].lease]).await.unwrap(), 1);
    let reclaimed = claim_one(&store, "now").await;
    assert_eq!(reclaimed.lease.delivery_id, claimed[0].lease.delivery_id);
    assert_eq!(reclaimed.attempt, 1, "a released delivery lost no attempt");

    // Plain `append` ignores the mark.
    let third = event("s", "x");
    let mut item = to(&third, &["now"]);
    item.deliveries[0].claim = true;
    store.append(&[item]).await.unwrap();
    assert_eq!(
        event_ids(&claim(&store, &["now"], 10).await),
        vec![third.switchyard_id]
    );
}

pub async fn claim_respects_triggers_and_limit(store: Arc<dyn Store>) {
    let (a1, b, a2) = (event("s", "x"), event("s", "x"), event("s", "x"));
    store
        .append(&[to(&a1, &["alpha"]), to(&b, &["beta"]), to(&a2, &["alpha"])])
        .await
        .unwrap();

    assert!(claim(&store, &["gamma"], 10).await.is_empty());
    assert!(claim(&store, &[], 10).await.is_empty());
    assert!(claim(&store, &["alpha"], 0).await.is_empty());

    let first = claim(&store, &["alpha"], 1).await;
    assert_eq!(
        event_ids(&first),
        vec![a1.switchyard_id],
        "oldest first, limit respected"
    );
    assert_eq!(first[0].trigger, "alpha");
    assert_eq!(first[0].attempt, 1);
    assert!(first[0].claimed_at >= first[0].created_at);

    let rest = claim(&store, &["alpha", "beta"], 10).await;
    let mut got = event_ids(&rest);
    got.sort();
    let mut want = vec![b.switchyard_id, a2.switchyard_id];
    want.sort();
    assert_eq!(got, want);
    assert!(claim(&store, &["alpha", "beta"], 10).await.is_empty());
}

pub async fn claims_never_share_a_live_lease(store: Arc<dyn Store>) {
    let batch: Vec<NewEvent> = (0..5).map(|_| to(&event("s", "x"), &["t"])).collect();
    store.append(&batch).await.unwrap();

    let first = claim(&store, &["t"], 3).await;
    let second = claim(&store, &["t"], 10).await;
    assert_eq!((first.len(), second.len()), (3, 2));
    let ids: HashSet<i64> = first
        .iter()
        .chain(&second)
        .map(|c| c.lease.delivery_id)
        .collect();
    assert_eq!(ids.len(), 5, "a delivery was claimed twice");
    assert_ne!(
        first[0].lease.token, second[0].lease.token,
        "each claim gets a fresh token"
    );
    assert!(claim(&store, &["t"], 10).await.is_empty());
}

pub async fn released_lease_refuses_a_late_finish(store: Arc<dyn Store>) {
    let e = event("s", "x");
    store.append(&[to(&e, &["t"])]).await.unwrap();
    let stale = claim_one(&store, "t").await;
    let bogus = Lease {
        delivery_id: stale.lease.delivery_id,
        token: Uuid::new_v4(),
    };
    assert_eq!(
        store.release(&[bogus]).await.unwrap(),
        0,
        "release is fenced by the token"
    );
    assert_eq!(store.release(&[stale.lease]).await.unwrap(), 1);
    let delivery = store
        .get_delivery(stale.lease.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (delivery.status, delivery.attempts),
        (DeliveryStatus::Pending, 0)
    );

    let fresh = claim_one(&store, "t").await;
    assert_eq!(fresh.lease.delivery_id, stale.lease.delivery_id);
    assert_eq!(
        fresh.attempt, 1,
        "a released claim does not count as an attempt"
    );

    let accepted = store
        .finish(&[
            finished(&stale, AttemptOutcome::Succeeded, None, None),
            finished(&fresh, AttemptOutcome::Dead, None, Some("fatal")),
        ])
        .await
        .unwrap();
    assert_eq!(accepted, vec![false, true]);
    let delivery = store
        .get_delivery(fresh.lease.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Dead);
    assert_eq!(
        delivery.attempt_log.len(),
        1,
        "the refused result left no attempt"
    );
    assert_eq!(delivery.attempt_log[0].outcome, AttemptOutcome::Dead);
    assert_eq!(
        store
            .finish(&[finished(&fresh, AttemptOutcome::Succeeded, None, None)])
            .await
            .unwrap(),
        vec![false],
        "a finished delivery takes no second result"
    );
}

pub async fn heartbeat_extends_the_lease(store: Arc<dyn Store>) {
    store.append(&[to(&event("s", "x"), &["t"])]).await.unwrap();
    let claimed = store
        .claim(&names(&["t"]), 1, SHORT_LEASE)
        .await
        .unwrap()
        .remove(0);
    let bogus = Lease {
        delivery_id: claimed.lease.delivery_id,
        token: Uuid::new_v4(),
    };
    assert_eq!(
        store
            .heartbeat(&[bogus, claimed.lease], LEASE)
            .await
            .unwrap(),
        [false, true],
        "each lease is answered for in input order"
    );

    tokio::time::sleep(SHORT_LEASE * 2).await;
    assert_eq!(
        store.reclaim_expired().await.unwrap(),
        0,
        "the heartbeat extended the lease"
    );
    assert!(claim(&store, &["t"], 1).await.is_empty());
    assert_eq!(
        store
            .finish(&[finished(&claimed, AttemptOutcome::Succeeded, None, None)])
            .await
            .unwrap(),
        vec![true]
    );
    assert_eq!(
        store.heartbeat(&[claimed.lease], LEASE).await.unwrap(),
        [false],
        "a finished lease is gone"
    );
}

pub async fn expired_lease_is_reclaimed_as_abandoned(store: Arc<dyn Store>) {
    store.append(&[to(&event("s", "x"), &["t"])]).await.unwrap();
    let lost = store
        .claim(&names(&["t"]), 1, SHORT_LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        store.reclaim_expired().await.unwrap(),
        0,
        "the lease is still live"
    );

    tokio::time::sleep(SHORT_LEASE * 2).await;
    assert_eq!(store.reclaim_expired().await.unwrap(), 1);
    assert_eq!(store.reclaim_expired().await.unwrap(), 0);

    let delivery = store
        .get_delivery(lost.lease.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(delivery.attempt_log.len(), 1);
    let abandoned = &delivery.attempt_log[0];
    assert_eq!(
        (abandoned.attempt, abandoned.outcome),
        (1, AttemptOutcome::Abandoned)
    );
    assert_eq!(abandoned.started_at, lost.claimed_at);
    assert!(
        abandoned.duration_ms >= 50,
        "duration {} ms",
        abandoned.duration_ms
    );
    assert!(
        abandoned
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("lease expired")
    );

    let again = claim_one(&store, "t").await;
    assert_eq!(again.lease.delivery_id, lost.lease.delivery_id);
    assert_eq!(again.attempt, 2);
    assert_eq!(
        store
            .finish(&[finished(&lost, AttemptOutcome::Succeeded, None, None)])
            .await
            .unwrap(),
        vec![false]
    );
    assert_eq!(
        store.heartbeat(&[lost.lease], LEASE).await.unwrap(),
        [false]
    );
}

pub async fn retry_waits_for_its_run_at(store: Arc<dyn Store>) {
    let (later, sooner) = (event("s", "x"), event("s", "x"));
    store
        .append(&[to(&later, &["t"]), to(&sooner, &["t"])])
        .await
        .unwrap();
    let claimed = claim(&store, &["t"], 2).await;
    assert_eq!(
        event_ids(&claimed),
        vec![later.switchyard_id, sooner.switchyard_id]
    );

    let retry_at = micros(Utc::now() + TimeDelta::hours(1));
    let past = micros(Utc::now() - TimeDelta::seconds(1));
    let accepted = store
        .finish(&[
            finished(
                &claimed[0],
                AttemptOutcome::Retry,
                Some(retry_at),
                Some("busy"),
            ),
            finished(&claimed[1], AttemptOutcome::Retry, Some(past), Some("blip")),
        ])
        .await
        .unwrap();
    assert_eq!(accepted, vec![true, true]);

    let waiting = store
        .get_delivery(claimed[0].lease.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status, DeliveryStatus::Pending);
    assert_eq!(waiting.run_at, retry_at);
    assert_eq!(waiting.last_error.as_deref(), Some("busy"));
    assert_eq!(waiting.attempt_log[0].outcome, AttemptOutcome::Retry);

    let again = claim(&store, &["t"], 10).await;
    assert_eq!(
        event_ids(&again),
        vec![sooner.switchyard_id],
        "only the retry whose time has come"
    );
    assert_eq!(again[0].attempt, 2);
    assert_eq!(
        store.next_run_at(&names(&["t"])).await.unwrap(),
        Some(retry_at)
    );
    assert_eq!(store.next_run_at(&names(&["other"])).await.unwrap(), None);
}

pub async fn ordering_key_runs_one_at_a_time_in_order(store: Arc<dyn Store>) {
    let [a1, a2, b1, c1, c2] = [(); 5].map(|()| event("s", "x"));
    store
        .append(&[
            keyed(&a1, "ord", "a"),
            keyed(&a2, "ord", "a"),
            keyed(&b1, "ord", "b"),
            keyed(&c1, "ord", "c"),
            keyed(&c2, "ord", "c"),
        ])
        .await
        .unwrap();
    // Same key on another trigger is a separate queue.
    let other = event("s", "x");
    store.append(&[keyed(&other, "other", "a")]).await.unwrap();

    let heads = claim(&store, &["ord"], 10).await;
    assert_eq!(
        event_ids(&heads),
        vec![a1.switchyard_id, b1.switchyard_id, c1.switchyard_id],
        "one delivery per key, the first"
    );
    assert!(
        claim(&store, &["ord"], 10).await.is_empty(),
        "the rest wait for their heads"
    );
    assert_eq!(
        store.next_run_at(&names(&["ord"])).await.unwrap(),
        None,
        "blocked deliveries are not runnable"
    );
    assert_eq!(
        event_ids(&claim(&store, &["other"], 10).await),
        vec![other.switchyard_id]
    );

    // A head that retries keeps its key blocked, and runs again before the others.
    let past = micros(Utc::now() - TimeDelta::seconds(1));
    store
        .finish(&[finished(
            &heads[0],
            AttemptOutcome::Retry,
            Some(past),
            Some("again"),
        )])
        .await
        .unwrap();
    let retried = claim(&store, &["ord"], 10).await;
    assert_eq!(event_ids(&retried), vec![a1.switchyard_id]);
    assert_eq!(retried[0].attempt, 2);

    // Once the head is dead or succeeded, the next delivery of its key is claimable.
    store
        .finish(&[
            finished(&retried[0], AttemptOutcome::Dead, None, Some("gave up")),
            finished(&heads[2], AttemptOutcome::Succeeded, None, None),
        ])
        .await
        .unwrap();
    let next = claim(&store, &["ord"], 10).await;
    let mut got = event_ids(&next);
    got.sort();
    let mut want = vec![a2.switchyard_id, c2.switchyard_id];
    want.sort();
    assert_eq!(got, want);
}
