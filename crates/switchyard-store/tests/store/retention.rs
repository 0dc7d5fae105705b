//! Retention: what goes, what stays, and what is counted before it goes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_core::Event;
use switchyard_core::config::{RetentionConfig, RetentionPeriod, SourceRetention};
use switchyard_store::{AttemptOutcome, RetentionDeleted, Store, Usage, delete_expired};

use crate::support::*;

const DAY: Duration = Duration::from_secs(86_400);

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// An event of `source` received `age` ago.
fn aged(source: &str, age: chrono::Duration) -> Event {
    let mut event = event(source, "retention.test");
    event.received_at = micros(Utc::now() - age);
    event
}

async fn exists(store: &Arc<dyn Store>, event: &Event) -> bool {
    store
        .get_event(event.switchyard_id)
        .await
        .expect("get_event")
        .is_some()
}

async fn succeed(store: &Arc<dyn Store>, trigger: &str) {
    let claimed = claim_one(store, trigger).await;
    let done = store
        .finish(&[finished(&claimed, AttemptOutcome::Succeeded, None, None)])
        .await
        .expect("finish");
    assert_eq!(done, [true]);
}

async fn kill(store: &Arc<dyn Store>, trigger: &str) -> i64 {
    let claimed = claim_one(store, trigger).await;
    let done = store
        .finish(&[finished(&claimed, AttemptOutcome::Dead, None, Some("boom"))])
        .await
        .expect("finish");
    assert_eq!(done, [true]);
    claimed.lease.delivery_id
}

fn due(report: &[switchyard_store::RetentionDue], table: &str) -> u64 {
    report
        .iter()
        .find(|due| due.table.name() == table)
        .unwrap_or_else(|| panic!("no {table} in {report:?}"))
        .due
}

pub async fn old_finished_events_go_and_unfinished_ones_stay(store: Arc<dyn Store>) {
    let old = days(40);
    let done = aged("s", old);
    let pending = aged("s", old);
    let running = aged("s", old);
    let dead = aged("s", old);
    let unrouted = aged("s", old);
    let replayed = aged("s", old);
    let retried = aged("s", old);
    let recent = aged("s", days(2));
    store
        .append(&[
            to(&done, &["done"]),
            to(&pending, &["pending"]),
            to(&running, &["running"]),
            to(&dead, &["dead"]),
            to(&unrouted, &[]),
            to(&replayed, &["replayed"]),
            to(&retried, &["retried"]),
            to(&recent, &["recent"]),
        ])
        .await
        .expect("append");
    succeed(&store, "done").await;
    claim_one(&store, "running").await;
    kill(&store, "dead").await;
    let dead_id = kill(&store, "replayed").await;
    assert_eq!(store.replay_dead(&[dead_id]).await.unwrap().len(), 1);
    succeed(&store, "replayed").await;
    // retried: one attempt abandoned (its lease expired), one retried, one succeeded.
    let lost = store
        .claim(&names(&["retried"]), 1, SHORT_LEASE)
        .await
        .unwrap();
    assert_eq!(lost.len(), 1);
    tokio::time::sleep(SHORT_LEASE * 3).await;
    assert_eq!(store.reclaim_expired().await.unwrap(), 1);
    let again = claim_one(&store, "retried").await;
    store
        .finish(&[finished(&again, AttemptOutcome::Retry, None, Some("later"))])
        .await
        .unwrap();
    succeed(&store, "retried").await;
    succeed(&store, "recent").await;

    let policy = RetentionConfig::default();
    let now = Utc::now();
    let report = store.retention_due(&policy, now).await.expect("due");
    assert_eq!(due(&report, "events"), 4, "{report:?}");
    assert_eq!(due(&report, "dead_letters"), 0, "{report:?}");
    assert_eq!(report[0].oldest_due, Some(done.received_at), "{report:?}");
    assert_eq!(report[0].oldest, Some(done.received_at), "{report:?}");

    let deleted = delete_expired(&*store, &policy, now).await.expect("delete");
    assert_eq!(
        deleted,
        RetentionDeleted {
            events: 4,
            // done 1, replayed 2 (the dead one and its replay), retried 1.
            deliveries: 4,
            dead_letters: 0,
            // done 1, replayed 2, retried 3.
            attempts: 6,
            rejected_inputs: 0,
        }
    );
    for gone in [&done, &unrouted, &replayed, &retried] {
        assert!(
            !exists(&store, gone).await,
            "{} should be gone",
            gone.switchyard_id
        );
    }
    for kept in [&pending, &running, &dead, &recent] {
        assert!(
            exists(&store, kept).await,
            "{} should be kept",
            kept.switchyard_id
        );
    }
    let report = store.retention_due(&policy, now).await.unwrap();
    assert_eq!(due(&report, "events"), 0, "{report:?}");
    assert_eq!(
        delete_expired(&*store, &policy, now).await.unwrap(),
        RetentionDeleted::default()
    );

    let today = Utc::now().date_naive();
    let usage = |trigger: &str, [attempts, succeeded, retried, dead, abandoned]: [u64; 5]| Usage {
        day: today,
        trigger: trigger.to_owned(),
        attempts,
        succeeded,
        retried,
        dead,
        abandoned,
        handler_ms: 7 * (attempts - abandoned),
    };
    let mut rolled = store.usage().await.expect("usage");
    for row in &mut rolled {
        // An abandoned attempt lasts from its claim to the reclaim; the others 7 ms.
        if row.abandoned > 0 {
            assert!(
                row.handler_ms >= 7 * (row.attempts - row.abandoned),
                "{row:?}"
            );
            row.handler_ms = 7 * (row.attempts - row.abandoned);
        }
    }
    assert_eq!(
        rolled,
        [
            usage("done", [1, 1, 0, 0, 0]),
            usage("replayed", [2, 1, 0, 1, 0]),
            usage("retried", [3, 1, 1, 0, 1]),
        ]
    );
}

pub async fn dead_letters_expire_by_their_own_period(store: Arc<dyn Store>) {
    let event = aged("s", days(40));
    store.append(&[to(&event, &["t"])]).await.unwrap();
    kill(&store, "t").await;
    let policy = RetentionConfig::default();
    let now = Utc::now();

    // The event is past its 30 days, but its dead letter keeps it.
    assert_eq!(
        delete_expired(&*store, &policy, now).await.unwrap(),
        RetentionDeleted::default()
    );
    assert!(exists(&store, &event).await);
    // With dead letters kept forever, they keep their event forever too.
    let forever = RetentionConfig {
        dead_letters: RetentionPeriod::FOREVER,
        ..RetentionConfig::default()
    };
    let later = now + days(1000);
    assert_eq!(
        delete_expired(&*store, &forever, later).await.unwrap(),
        RetentionDeleted::default()
    );
    // 89 days after it died, the dead letter is still kept.
    let report = store.retention_due(&policy, now + days(89)).await.unwrap();
    assert_eq!(due(&report, "dead_letters"), 0, "{report:?}");
    // After 90 it goes, and then its event does too.
    let report = store.retention_due(&policy, now + days(91)).await.unwrap();
    assert_eq!(due(&report, "dead_letters"), 1, "{report:?}");
    let deleted = delete_expired(&*store, &policy, now + days(91))
        .await
        .unwrap();
    assert_eq!(
        deleted,
        RetentionDeleted {
            events: 1,
            deliveries: 0,
            dead_letters: 1,
            attempts: 1,
            rejected_inputs: 0,
        }
    );
    assert!(!exists(&store, &event).await);
    let usage = store.usage().await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].attempts, usage[0].dead), (1, 1), "{usage:?}");
}

pub async fn sources_override_the_periods(store: Arc<dyn Store>) {
    let mut policy = RetentionConfig::default();
    policy.sources.insert(
        "short".into(),
        SourceRetention {
            events: Some(RetentionPeriod::keep_for(DAY)),
            rejected_inputs: Some(RetentionPeriod::keep_for(DAY)),
            ..SourceRetention::default()
        },
    );
    policy.sources.insert(
        "forever".into(),
        SourceRetention {
            events: Some(RetentionPeriod::FOREVER),
            rejected_inputs: Some(RetentionPeriod::FOREVER),
            ..SourceRetention::default()
        },
    );
    let mut events = Vec::new();
    for source in ["short", "forever", "other"] {
        for age in [days(2), days(40)] {
            events.push(aged(source, age));
        }
        store
            .reject_input(source, "input", "not an event", "{}")
            .await
            .unwrap();
    }
    let batch: Vec<_> = events.iter().map(|event| to(event, &[])).collect();
    store.append(&batch).await.unwrap();

    let now = Utc::now();
    let deleted = delete_expired(&*store, &policy, now).await.unwrap();
    assert_eq!(
        (deleted.events, deleted.rejected_inputs),
        (3, 0),
        "{deleted:?}"
    );
    let kept: Vec<(&str, bool)> = {
        let mut kept = Vec::new();
        for event in &events {
            kept.push((event.source_name.as_str(), exists(&store, event).await));
        }
        kept
    };
    assert_eq!(
        kept,
        [
            ("short", false),
            ("short", false),
            ("forever", true),
            ("forever", true),
            ("other", true),
            ("other", false),
        ]
    );

    // Two days on, the short source's input has expired; a month on, the default's.
    let deleted = delete_expired(&*store, &policy, now + days(2))
        .await
        .unwrap();
    assert_eq!(deleted.rejected_inputs, 1, "{deleted:?}");
    let deleted = delete_expired(&*store, &policy, now + days(31))
        .await
        .unwrap();
    assert_eq!(deleted.rejected_inputs, 1, "{deleted:?}");
    let left: Vec<String> = store
        .list_rejected(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|input| input.source_name)
        .collect();
    assert_eq!(left, ["forever"]);
}

pub async fn batches_go_oldest_first(store: Arc<dyn Store>) {
    let events: Vec<Event> = (0..5).map(|i| aged("s", days(50 - i))).collect();
    let batch: Vec<_> = events.iter().map(|event| to(event, &[])).collect();
    store.append(&batch).await.unwrap();
    let policy = RetentionConfig::default();
    let now: DateTime<Utc> = Utc::now();
    let first = store.delete_expired(&policy, now, 2).await.unwrap();
    assert_eq!(first.events, 2);
    let mut kept = Vec::new();
    for event in &events {
        kept.push(exists(&store, event).await);
    }
    assert_eq!(kept, [false, false, true, true, true]);
    let report = store.retention_due(&policy, now).await.unwrap();
    assert_eq!(due(&report, "events"), 3);
    assert_eq!(report[0].oldest, Some(events[2].received_at));
}
