//! Retention in a running engine: the periodic task deletes what has expired, keeps
//! what a delivery still needs, and `/metrics` shows it.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::{Context, Engine, Event, HandlerError, handler_fn};
use switchyard_store::{DeliveryStatus, NewDelivery, NewEvent};
use uuid::Uuid;

use crate::both_backends;
use crate::crash::{Workdir, cli};
use crate::support::{Backend, eventually, fresh_store, metrics, open, post_json, start};

const WAIT: Duration = Duration::from_secs(20);

const CONFIG: &str = "
retention: { events: 1s, interval: 1s }
sources:
  ok: { http: { path: /ok } }
  bad: { http: { path: /bad } }
triggers:
  accept: { source: ok, handler: accept }
  refuse: { source: bad, handler: refuse }
";

async fn post(addr: std::net::SocketAddr, path: &str) -> Uuid {
    let response = post_json(addr, path, json!({"n": 1}), &[]).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn the_periodic_task_deletes_finished_events_and_metrics_show_it(backend: Backend) {
    let store_url = fresh_store(backend).await;
    let engine = Engine::default()
        .handler(
            "accept",
            handler_fn(|_: Context, _: Event| async { Ok(()) }),
        )
        .handler(
            "refuse",
            handler_fn(|_: Context, _: Event| async { Err::<(), _>(HandlerError::fatal("never")) }),
        );
    let engine = start(engine, CONFIG, &store_url).await;
    let addr = engine.local_addr();
    let store = engine.store().clone();
    let done = post(addr, "/ok").await;
    let dead = post(addr, "/bad").await;

    eventually(WAIT, "retention to delete the finished event", || async {
        store.get_event(done).await.unwrap().is_none().then_some(())
    })
    .await;
    let text = eventually(WAIT, "the metrics to count it", || async {
        let text = metrics(addr).await;
        text.contains("switchyard_retention_deleted_rows_total{table=\"events\"} 1")
            .then_some(text)
    })
    .await;
    for needle in [
        "switchyard_retention_deleted_rows_total{table=\"deliveries\"} 1",
        "switchyard_retention_deleted_rows_total{table=\"attempts\"} 1",
        "switchyard_retention_deleted_rows_total{table=\"dead_letters\"} 0",
        "switchyard_oldest_row_age_seconds{table=\"dead_letters\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    // The other event is as old, but its dead letter (kept 90 days) keeps it.
    let kept = store
        .get_event(dead)
        .await
        .unwrap()
        .expect("the dead letter's event stays");
    assert_eq!(kept.deliveries[0].status, DeliveryStatus::Dead);
    let usage = store.usage().await.unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(
        (
            usage[0].trigger.as_str(),
            usage[0].attempts,
            usage[0].succeeded
        ),
        ("accept", 1, 1)
    );
    engine.shutdown().await;
}

/// An event of source `s`, received `days` ago, routed to `triggers`.
fn aged(days: i64, triggers: &[&str]) -> NewEvent {
    let mut event = switchyard_core::Event::new("s", "/s", "retention.test");
    event.received_at = chrono::Utc::now() - chrono::Duration::days(days);
    NewEvent {
        event,
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

async fn the_cli_dry_run_counts_then_retention_deletes(backend: Backend) {
    let store_url = fresh_store(backend).await;
    let store = open(&store_url).await;
    let batch = [aged(40, &[]), aged(35, &[]), aged(40, &["t"]), aged(2, &[])];
    store.append(&batch).await.unwrap();
    store
        .reject_input("s", "input-1", "not an event", "{}")
        .await
        .unwrap();
    let dir = Workdir::new();
    let config = dir.config(
        &store_url,
        0,
        "sources: { s: { http: { path: /s } } }\ntriggers: { t: { source: s, handler: log } }\n",
    );
    let exists = |i: usize| {
        let store = store.clone();
        let id = batch[i].event.switchyard_id;
        async move { store.get_event(id).await.unwrap().is_some() }
    };

    let dry = cli(&config, &["retention", "--dry-run", "--json"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let due: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(due[0]["table"], "events", "{due}");
    assert_eq!(due[0]["due"], 2, "{due}");
    assert_eq!(due[0]["period"], "30d", "{due}");
    assert_eq!(due[1]["table"], "dead_letters", "{due}");
    assert_eq!(due[2]["table"], "rejected_inputs", "{due}");
    assert_eq!(due[2]["due"], 0, "{due}");
    assert!(
        exists(0).await && exists(1).await,
        "a dry run deleted events"
    );

    let table = cli(&config, &["retention", "--dry-run"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        text.contains("would delete") && text.contains("dry run: nothing was deleted"),
        "{text}"
    );

    let deleted = cli(&config, &["retention", "--json"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let deleted: Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(deleted["events"], 2, "{deleted}");
    assert_eq!(deleted["rejected_inputs"], 0, "{deleted}");
    let kept = [
        exists(0).await,
        exists(1).await,
        exists(2).await,
        exists(3).await,
    ];
    assert_eq!(
        kept,
        [false, false, true, true],
        "the pending and the recent event stay"
    );

    let again = cli(&config, &["retention"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        text.contains("events") && text.contains("deleted"),
        "{text}"
    );

    let bad = dir.config_named(
        "bad.yaml",
        &store_url,
        0,
        "retention: { events: soon }\nsources: {}\n",
    );
    let refused = cli(&bad, &["retention", "--dry-run"]);
    let error = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{error}");
    assert!(
        error.contains("retention.events: \"soon\" is not a retention period"),
        "{error}"
    );
}

both_backends!(
    the_periodic_task_deletes_finished_events_and_metrics_show_it,
    the_cli_dry_run_counts_then_retention_deletes,
);
