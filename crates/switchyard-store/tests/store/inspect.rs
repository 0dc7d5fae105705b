//! Scenarios for reading and repairing the log: events, deliveries, dead letters,
//! replay, purge, stats and migrations. Each is written once and run on both backends
//! (see `both_backends!` in `store.rs`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use switchyard_core::Event;
use switchyard_store::{
    Appended, AttemptOutcome, DeadQuery, DeliveryStatus, EventDetail, EventQuery, Finished,
    NewDelivery, NewEvent, Store, StoreError,
};
use uuid::Uuid;

use crate::support::*;

pub async fn replay_dead_creates_a_new_delivery(store: Arc<dyn Store>) {
    let e = event("hooks", "ping");
    store.append(&[keyed(&e, "t", "k")]).await.unwrap();
    let claimed = claim_one(&store, "t").await;
    store
        .finish(&[finished(
            &claimed,
            AttemptOutcome::Dead,
            None,
            Some("fatal: 400"),
        )])
        .await
        .unwrap();
    let dead_id = claimed.lease.delivery_id;

    let dead = store.list_dead(&DeadQuery::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].delivery_id, dead[0].event_id),
        (dead_id, e.switchyard_id)
    );
    assert_eq!(
        (
            dead[0].trigger.as_str(),
            dead[0].source_name.as_str(),
            dead[0].ty.as_str()
        ),
        ("t", "hooks", "ping")
    );
    assert_eq!(
        (dead[0].attempts, dead[0].last_error.as_deref()),
        (1, Some("fatal: 400"))
    );

    let created = store
        .replay_dead(&[dead_id, dead_id, i64::MAX])
        .await
        .unwrap();
    assert_eq!(created.len(), 1, "only dead deliveries are replayed, once");
    assert_eq!(
        store.get_delivery(dead_id).await.unwrap().unwrap().status,
        DeliveryStatus::Replayed
    );
    let replay = store.get_delivery(created[0]).await.unwrap().unwrap();
    assert_eq!(replay.status, DeliveryStatus::Pending);
    assert_eq!(
        (replay.event_id, replay.trigger.as_str()),
        (e.switchyard_id, "t")
    );
    assert_eq!(
        (
            replay.replay_of,
            replay.ordering_key.as_deref(),
            replay.attempts
        ),
        (Some(dead_id), Some("k"), 0)
    );
    assert!(
        store
            .list_dead(&DeadQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.replay_dead(&[dead_id]).await.unwrap().is_empty());

    let again = claim_one(&store, "t").await;
    assert_eq!((again.lease.delivery_id, again.attempt), (created[0], 1));
}

pub async fn purge_dead_deletes_matching_dead_letters(store: Arc<dyn Store>) {
    let batch: Vec<NewEvent> = ["t1", "t1", "t2", "t1"]
        .iter()
        .map(|t| to(&event("s", "x"), &[t]))
        .collect();
    store.append(&batch).await.unwrap();
    let claimed = claim(&store, &["t1", "t2"], 3).await;
    let results: Vec<Finished> = claimed
        .iter()
        .map(|c| finished(c, AttemptOutcome::Dead, None, Some("no")))
        .collect();
    assert_eq!(store.finish(&results).await.unwrap(), vec![true; 3]);

    let future = Utc::now() + TimeDelta::hours(1);
    assert_eq!(
        store
            .purge_dead(&DeadQuery {
                since: Some(future),
                ..Default::default()
            })
            .await
            .unwrap(),
        0
    );
    let past = Utc::now() - TimeDelta::hours(1);
    let older = DeadQuery {
        before: Some(past),
        ..Default::default()
    };
    assert_eq!(
        store.purge_dead(&older).await.unwrap(),
        0,
        "none died before an hour ago"
    );
    let t1 = DeadQuery {
        trigger: Some("t1".to_owned()),
        ..Default::default()
    };
    assert_eq!(store.list_dead(&t1).await.unwrap().len(), 2);
    assert_eq!(store.purge_dead(&t1).await.unwrap(), 2);
    let left = store.list_dead(&DeadQuery::default()).await.unwrap();
    assert_eq!(
        left.iter().map(|d| d.trigger.as_str()).collect::<Vec<_>>(),
        vec!["t2"]
    );
    for c in claimed.iter().filter(|c| c.trigger == "t1") {
        assert!(
            store
                .get_delivery(c.lease.delivery_id)
                .await
                .unwrap()
                .is_none(),
            "purged with its attempts"
        );
    }
    assert_eq!(store.purge_dead(&DeadQuery::default()).await.unwrap(), 1);
    assert_eq!(
        claim(&store, &["t1"], 10).await.len(),
        1,
        "pending deliveries are not purged"
    );
}

pub async fn list_events_filters(store: Arc<dyn Store>) {
    let t0 = micros(Utc::now() - TimeDelta::minutes(10));
    let mut e1 = event("s1", "a");
    let mut e2 = event("s2", "b");
    let mut e3 = event("s1", "b");
    assert!(
        e1.switchyard_id < e2.switchyard_id && e2.switchyard_id < e3.switchyard_id,
        "UUIDv7 ids sort by creation"
    );
    e1.received_at = t0;
    e2.received_at = t0 + TimeDelta::seconds(1);
    e3.received_at = t0 + TimeDelta::seconds(2);
    e1.subject = Some("one".to_owned());
    store
        .append(&[to(&e1, &["t1"]), to(&e2, &["t2"]), to(&e3, &["t1", "t2"])])
        .await
        .unwrap();
    let dead = claim(&store, &["t1"], 1).await;
    store
        .finish(&[finished(&dead[0], AttemptOutcome::Dead, None, Some("x"))])
        .await
        .unwrap();
    let running = claim(&store, &["t2"], 1).await;
    assert_eq!(event_ids(&running), vec![e2.switchyard_id]);

    let list = |query: EventQuery| {
        let store = store.clone();
        async move {
            store
                .list_events(&query)
                .await
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(EventQuery::default()).await,
        vec![e3.switchyard_id, e2.switchyard_id, e1.switchyard_id],
        "newest first, 0 = no limit"
    );
    assert_eq!(
        list(EventQuery {
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![e3.switchyard_id]
    );
    assert_eq!(
        list(EventQuery {
            source: Some("s1".into()),
            ..Default::default()
        })
        .await,
        vec![e3.switchyard_id, e1.switchyard_id]
    );
    assert_eq!(
        list(EventQuery {
            ty: Some("b".into()),
            ..Default::default()
        })
        .await,
        vec![e3.switchyard_id, e2.switchyard_id]
    );
    assert_eq!(
        list(EventQuery {
            trigger: Some("t2".into()),
            ..Default::default()
        })
        .await,
        vec![e3.switchyard_id, e2.switchyard_id]
    );
    assert_eq!(
        list(EventQuery {
            status: Some(DeliveryStatus::Dead),
            ..Default::default()
        })
        .await,
        vec![e1.switchyard_id]
    );
    assert_eq!(
        list(EventQuery {
            trigger: Some("t2".into()),
            status: Some(DeliveryStatus::Dead),
            ..Default::default()
        })
        .await,
        Vec::<Uuid>::new(),
        "trigger and status apply to the same delivery"
    );
    assert_eq!(
        list(EventQuery {
            since: Some(t0 + TimeDelta::seconds(1)),
            ..Default::default()
        })
        .await,
        vec![e3.switchyard_id, e2.switchyard_id]
    );
    assert_eq!(
        list(EventQuery {
            after: Some(e1.switchyard_id),
            ..Default::default()
        })
        .await,
        vec![e2.switchyard_id, e3.switchyard_id],
        "oldest first"
    );
    assert_eq!(
        list(EventQuery {
            after: Some(e1.switchyard_id),
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![e2.switchyard_id]
    );

    let summaries = store.list_events(&EventQuery::default()).await.unwrap();
    let (s3, s2, s1) = (&summaries[0], &summaries[1], &summaries[2]);
    assert_eq!(
        (s2.deliveries, s2.succeeded, s2.pending, s2.dead),
        (1, 0, 1, 0),
        "a running delivery counts as pending"
    );
    assert_eq!(
        (s3.deliveries, s3.succeeded, s3.pending, s3.dead),
        (2, 0, 2, 0)
    );
    assert_eq!(
        (s1.deliveries, s1.succeeded, s1.pending, s1.dead),
        (1, 0, 0, 1)
    );
    assert_eq!(
        (
            s1.source_name.as_str(),
            s1.ty.as_str(),
            s1.subject.as_deref()
        ),
        ("s1", "a", Some("one"))
    );
    assert_eq!(s1.received_at, t0);
}

pub async fn events_between_is_a_half_open_window(store: Arc<dyn Store>) {
    let t0 = micros(Utc::now() - TimeDelta::hours(1));
    let events: Vec<Event> = (0..3)
        .map(|i| {
            let mut e = event(if i == 1 { "b" } else { "a" }, "x");
            e.received_at = t0 + TimeDelta::seconds(i);
            e
        })
        .collect();
    store
        .append(&events.iter().map(|e| to(e, &[])).collect::<Vec<_>>())
        .await
        .unwrap();
    let ids = |found: Vec<Event>| found.iter().map(|e| e.switchyard_id).collect::<Vec<_>>();

    let window = store
        .events_between(t0, t0 + TimeDelta::seconds(2), None, None, 0)
        .await
        .unwrap();
    assert_eq!(window[0], events[0]);
    assert_eq!(
        ids(window),
        vec![events[0].switchyard_id, events[1].switchyard_id]
    );
    let only_a = store
        .events_between(t0, t0 + TimeDelta::seconds(3), Some("a"), None, 0)
        .await
        .unwrap();
    assert_eq!(
        ids(only_a),
        vec![events[0].switchyard_id, events[2].switchyard_id]
    );
    let limited = store
        .events_between(t0, t0 + TimeDelta::seconds(3), None, None, 1)
        .await
        .unwrap();
    assert_eq!(ids(limited), vec![events[0].switchyard_id]);
    let next_page = store
        .events_between(
            t0,
            t0 + TimeDelta::seconds(3),
            None,
            Some(events[0].switchyard_id),
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(next_page),
        vec![events[1].switchyard_id],
        "pages continue after the cursor"
    );
}

pub async fn get_event_includes_deliveries_and_attempts(store: Arc<dyn Store>) {
    let e = event("s", "x").with_dedupe_key("k1");
    store.append(&[to(&e, &["t1", "t2"])]).await.unwrap();
    let first = claim_one(&store, "t1").await;
    let past = micros(Utc::now() - TimeDelta::seconds(1));
    store
        .finish(&[finished(
            &first,
            AttemptOutcome::Retry,
            Some(past),
            Some("timeout"),
        )])
        .await
        .unwrap();
    let second = claim_one(&store, "t1").await;
    store
        .finish(&[finished(&second, AttemptOutcome::Succeeded, None, None)])
        .await
        .unwrap();

    let detail = store
        .get_event(e.switchyard_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(detail.event, e);
    assert_eq!(detail.dedupe_key.as_deref(), Some("k1"));
    let triggers: Vec<&str> = detail
        .deliveries
        .iter()
        .map(|d| d.trigger.as_str())
        .collect();
    assert_eq!(triggers, vec!["t1", "t2"]);
    let t1 = &detail.deliveries[0];
    assert_eq!(
        (t1.status, t1.attempts, t1.last_error.as_deref()),
        (DeliveryStatus::Succeeded, 2, None)
    );
    let log: Vec<(u32, AttemptOutcome, Option<&str>)> = t1
        .attempt_log
        .iter()
        .map(|a| (a.attempt, a.outcome, a.error.as_deref()))
        .collect();
    assert_eq!(
        log,
        vec![
            (1, AttemptOutcome::Retry, Some("timeout")),
            (2, AttemptOutcome::Succeeded, None)
        ]
    );
    assert_eq!(t1.attempt_log[1].started_at, second.claimed_at);
    assert_eq!(t1.attempt_log[1].duration_ms, 7);
    let t2 = &detail.deliveries[1];
    assert_eq!((t2.status, t2.attempts), (DeliveryStatus::Pending, 0));
    assert!(t2.attempt_log.is_empty());

    assert!(store.get_event(Uuid::now_v7()).await.unwrap().is_none());
    assert!(store.get_delivery(i64::MAX).await.unwrap().is_none());
}

pub async fn add_deliveries_to_an_existing_event(store: Arc<dyn Store>) {
    let e = event("s", "x");
    assert_eq!(
        store.append(&[to(&e, &[])]).await.unwrap(),
        vec![Appended::Created(e.switchyard_id)]
    );
    assert!(claim(&store, &["t1", "t2"], 10).await.is_empty());

    let wanted = [
        NewDelivery {
            trigger: "t1".to_owned(),
            ordering_key: Some("k".to_owned()),
            claim: false,
        },
        NewDelivery {
            trigger: "t2".to_owned(),
            ordering_key: None,
            claim: false,
        },
    ];
    let ids = store
        .add_deliveries(e.switchyard_id, &wanted, Some(99))
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);
    let detail = store.get_event(e.switchyard_id).await.unwrap().unwrap();
    let got: Vec<(i64, &str, Option<&str>, Option<i64>)> = detail
        .deliveries
        .iter()
        .map(|d| {
            (
                d.id,
                d.trigger.as_str(),
                d.ordering_key.as_deref(),
                d.replay_of,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[0], "t1", Some("k"), Some(99)),
            (ids[1], "t2", None, Some(99))
        ]
    );
    assert_eq!(claim(&store, &["t1", "t2"], 10).await.len(), 2);

    let missing = store.add_deliveries(Uuid::now_v7(), &wanted, None).await;
    assert!(
        matches!(missing, Err(StoreError::Invalid(_))),
        "{missing:?}"
    );
}

pub async fn stats_reports_depth_age_and_dead(store: Arc<dyn Store>) {
    let empty = store.stats().await.unwrap();
    assert!(empty.depth.is_empty() && empty.dead.is_empty());
    assert_eq!(empty.oldest_pending_secs, 0.0);

    let batch: Vec<NewEvent> = ["t1", "t1", "t2", "t3"]
        .iter()
        .map(|t| to(&event("s", "x"), &[t]))
        .collect();
    store.append(&batch).await.unwrap();
    let running = claim_one(&store, "t2").await;
    let dead = claim_one(&store, "t3").await;
    store
        .finish(&[finished(&dead, AttemptOutcome::Dead, None, None)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.depth,
        vec![("t1".to_owned(), 2), ("t2".to_owned(), 1)]
    );
    assert_eq!(stats.dead, vec![("t3".to_owned(), 1)]);
    assert!(
        (0.015..60.0).contains(&stats.oldest_pending_secs),
        "{}",
        stats.oldest_pending_secs
    );

    // A retry scheduled for later is queued but not yet runnable, so it has no age.
    let all = claim(&store, &["t1"], 10).await;
    let later = micros(Utc::now() + TimeDelta::hours(1));
    let results: Vec<Finished> = all
        .iter()
        .map(|c| finished(c, AttemptOutcome::Retry, Some(later), None))
        .collect();
    store.finish(&results).await.unwrap();
    store
        .finish(&[finished(&running, AttemptOutcome::Succeeded, None, None)])
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.depth, vec![("t1".to_owned(), 2)]);
    assert_eq!(stats.oldest_pending_secs, 0.0);
}

pub async fn migrate_is_idempotent(store: Arc<dyn Store>) {
    let e = event("s", "x");
    store.append(&[to(&e, &["t"])]).await.unwrap();
    let applied = store.migrate().await.expect("second migrate");
    assert!(
        applied.is_empty(),
        "a current schema is migrated again: {applied:?}"
    );
    store.check_schema().await.expect("the schema checks");
    store
        .probe_write()
        .await
        .expect("a write commits after migrating again");
    assert!(
        store.get_event(e.switchyard_id).await.unwrap().is_some(),
        "migrating again keeps the data"
    );
}

pub async fn cron_fires_commit_with_skips_and_position(store: Arc<dyn Store>) {
    let base = micros(Utc::now() - TimeDelta::hours(1));
    let t = |s: i64| base + TimeDelta::seconds(s);
    assert_eq!(store.schedule_position("tick").await.unwrap(), None);
    let tick = |at| {
        let mut e = event("tick", "cron.tick").with_dedupe_key(format!("cron:{at}"));
        e.time = at;
        to(&e, &["t1"])
    };
    let fired = store
        .record_fire("tick", Some(&tick(t(3))), &[t(1), t(2)], t(3))
        .await
        .unwrap();
    assert!(matches!(fired, Some(Appended::Created(_))));
    assert_eq!(store.schedule_position("tick").await.unwrap(), Some(t(3)));
    assert_eq!(
        store.list_skipped("tick", 10).await.unwrap(),
        vec![t(2), t(1)]
    );

    // Another process fires the same time: one event, the position never moves back.
    let again = store
        .record_fire("tick", Some(&tick(t(3))), &[], t(3))
        .await
        .unwrap();
    assert_eq!(again.map(Appended::id), fired.map(Appended::id));
    assert!(matches!(again, Some(Appended::Duplicate(_))));
    store
        .record_fire("tick", None, &[t(3)], t(2))
        .await
        .unwrap();
    assert_eq!(store.schedule_position("tick").await.unwrap(), Some(t(3)));
    assert_eq!(
        store.list_skipped("tick", 10).await.unwrap(),
        vec![t(2), t(1)],
        "a time that was fired is never recorded as skipped"
    );
}

/// A claimed delivery is stored `pending` under a lease; everything that reads it back
/// reports it `running`, and filters by status see it as that.
pub async fn claimed_deliveries_are_reported_running(store: Arc<dyn Store>) {
    let e = event("s", "x");
    store.append(&[to(&e, &["t1", "t2"])]).await.unwrap();
    let claimed = claim_one(&store, "t1").await;

    let statuses = |detail: EventDetail| -> Vec<(String, DeliveryStatus)> {
        detail
            .deliveries
            .into_iter()
            .map(|d| (d.trigger, d.status))
            .collect()
    };
    let detail = store
        .get_event(e.switchyard_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        statuses(detail),
        vec![
            ("t1".to_owned(), DeliveryStatus::Running),
            ("t2".to_owned(), DeliveryStatus::Pending)
        ]
    );
    let delivery = store
        .get_delivery(claimed.lease.delivery_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(delivery.status, DeliveryStatus::Running);

    let with_status = |status| {
        let store = store.clone();
        async move {
            let query = EventQuery {
                trigger: Some("t1".into()),
                status: Some(status),
                ..Default::default()
            };
            let found = store.list_events(&query).await.unwrap();
            found.iter().map(|summary| summary.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        with_status(DeliveryStatus::Running).await,
        vec![e.switchyard_id]
    );
    assert_eq!(
        with_status(DeliveryStatus::Pending).await,
        Vec::<Uuid>::new()
    );

    store
        .finish(&[finished(&claimed, AttemptOutcome::Succeeded, None, None)])
        .await
        .unwrap();
    assert_eq!(
        with_status(DeliveryStatus::Running).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        with_status(DeliveryStatus::Succeeded).await,
        vec![e.switchyard_id]
    );
}
