//! Retention in a running engine: the periodic task deletes what has expired, keeps
//! what a delivery still needs, and `/metrics` shows it.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::{Context, Engine, Event, HandlerError, handler_fn};
use switchyard_store::DeliveryStatus;
use uuid::Uuid;

use crate::both_backends;
use crate::support::{Backend, eventually, fresh_store, metrics, post_json, start};

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

both_backends!(the_periodic_task_deletes_finished_events_and_metrics_show_it);
