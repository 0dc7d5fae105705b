//! One behavioural suite, run against both backends.
//!
//! Each scenario is written once as `async fn(Arc<dyn Store>)` and instantiated for
//! SQLite (a fresh temporary file) and Postgres (a fresh database created from the
//! admin URL in `SWITCHYARD_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Postgres must be reachable: the Postgres tests fail, never skip, without it.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use switchyard_core::Event;
use switchyard_store::{
    Appended, AttemptOutcome, Claimed, DeadQuery, DeliveryStatus, EventQuery, Finished, Lease,
    NewDelivery, NewEvent, PostgresStore, SqliteStore, Store, StoreError,
};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);
const SHORT_LEASE: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------
// Backends

/// Runs `scenario` on a migrated SQLite store in a new temporary file, then deletes it.
async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let path: PathBuf = std::env::temp_dir().join(format!(
        "switchyard-store-test-{}.db",
        Uuid::new_v4().simple()
    ));
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    let outcome = tokio::spawn(scenario(Arc::new(store))).await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        // The file may already be gone (the WAL is removed when the last connection closes).
        let _ = std::fs::remove_file(file);
    }
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// A database of its own on the test Postgres server, dropped by [`PgDb::drop`].
struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> Self {
        let admin_url = std::env::var("SWITCHYARD_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("sy_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|error| {
            panic!("the Postgres tests need a server at {admin_url} (set SWITCHYARD_TEST_PG): {error}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    async fn open(&self) -> Arc<PostgresStore> {
        Arc::new(PostgresStore::open(&self.url).await.expect("open Postgres"))
    }

    async fn drop(self) {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .expect("reconnect to admin database");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop test database");
        admin.close().await.expect("close admin connection");
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Runs `scenario` with the test database; drops the database whatever happens.
async fn with_pg_db<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<PgDb>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = Arc::new(PgDb::create().await);
    let outcome = tokio::spawn(scenario(db.clone())).await;
    match Arc::try_unwrap(db) {
        Ok(db) => db.drop().await,
        Err(_) => panic!("a scenario kept the test database handle"),
    }
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Runs `scenario` on a migrated Postgres store in a new database.
async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_pg_db(|db| async move {
        let store = db.open().await;
        store.migrate().await.expect("migrate Postgres");
        scenario(store).await;
    })
    .await;
}

macro_rules! both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::on_sqlite(super::$scenario).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::on_postgres(super::$scenario).await;
                }
            )*
        }
    };
}

both_backends!(
    append_dedupes_within_and_across_batches,
    append_round_trips_every_event_field,
    claim_respects_triggers_and_limit,
    claims_never_share_a_live_lease,
    released_lease_refuses_a_late_finish,
    heartbeat_extends_the_lease,
    expired_lease_is_reclaimed_as_abandoned,
    retry_waits_for_its_run_at,
    ordering_key_runs_one_at_a_time_in_order,
    replay_dead_creates_a_new_delivery,
    purge_dead_deletes_matching_dead_letters,
    list_events_filters,
    events_between_is_a_half_open_window,
    get_event_includes_deliveries_and_attempts,
    add_deliveries_to_an_existing_event,
    stats_reports_depth_age_and_dead,
    migrate_is_idempotent,
);

// ---------------------------------------------------------------------------------
// Helpers

/// A timestamp as both backends store it: microsecond precision.
fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).expect("in range")
}

fn event(source_name: &str, ty: &str) -> Event {
    let mut event = Event::new(source_name, format!("/test/{source_name}"), ty);
    event.time = micros(event.time);
    event.received_at = micros(event.received_at);
    event
}

fn to(event: &Event, triggers: &[&str]) -> NewEvent {
    NewEvent {
        event: event.clone(),
        deliveries: triggers
            .iter()
            .map(|trigger| NewDelivery {
                trigger: (*trigger).to_owned(),
                ordering_key: None,
            })
            .collect(),
    }
}

fn keyed(event: &Event, trigger: &str, key: &str) -> NewEvent {
    NewEvent {
        event: event.clone(),
        deliveries: vec![NewDelivery {
            trigger: trigger.to_owned(),
            ordering_key: Some(key.to_owned()),
        }],
    }
}

fn names(triggers: &[&str]) -> Vec<String> {
    triggers.iter().map(|t| (*t).to_owned()).collect()
}

fn finished(
    claimed: &Claimed,
    outcome: AttemptOutcome,
    retry_at: Option<DateTime<Utc>>,
    error: Option<&str>,
) -> Finished {
    Finished {
        lease: claimed.lease,
        attempt: claimed.attempt,
        started_at: claimed.claimed_at,
        duration_ms: 7,
        outcome,
        retry_at,
        error: error.map(str::to_owned),
    }
}

async fn claim(store: &Arc<dyn Store>, triggers: &[&str], limit: u32) -> Vec<Claimed> {
    store
        .claim(&names(triggers), limit, LEASE)
        .await
        .expect("claim")
}

async fn claim_one(store: &Arc<dyn Store>, trigger: &str) -> Claimed {
    let mut claimed = claim(store, &[trigger], 1).await;
    assert_eq!(
        claimed.len(),
        1,
        "expected one runnable delivery of {trigger}"
    );
    claimed.remove(0)
}

fn event_ids(claimed: &[Claimed]) -> Vec<Uuid> {
    claimed.iter().map(|c| c.event.id).collect()
}

// ---------------------------------------------------------------------------------
// Scenarios for both backends

async fn append_dedupes_within_and_across_batches(store: Arc<dyn Store>) {
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
            Appended::Created(first.id),
            Appended::Duplicate(first.id),
            Appended::Created(other_source.id),
            Appended::Created(no_key.id),
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
            Appended::Duplicate(first.id),
            Appended::Duplicate(first.id),
            Appended::Duplicate(no_key.id)
        ]
    );

    assert!(store.get_event(same_key.id).await.unwrap().is_none());
    assert!(store.get_event(again.id).await.unwrap().is_none());
    let claimed = claim(&store, &["t1", "t2"], 100).await;
    let mut got: Vec<(Uuid, String)> = claimed
        .iter()
        .map(|c| (c.event.id, c.trigger.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (first.id, "t1".to_owned()),
        (other_source.id, "t1".to_owned()),
        (no_key.id, "t1".to_owned()),
        (no_key.id, "t2".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want, "duplicates must not create deliveries");
}

async fn append_round_trips_every_event_field(store: Arc<dyn Store>) {
    let mut full = event("orders", "order.created")
        .with_subject("order/42")
        .with_json(json!({"id": 42, "lines": [{"sku": "a", "qty": 2}], "note": null}))
        .with_dedupe_key("order-42");
    full.partitionkey = Some("customer-7".to_owned());
    full.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
    full.time = micros(Utc::now() - TimeDelta::hours(3));
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
    let detail = store.get_event(full.id).await.unwrap().expect("stored");
    assert_eq!(detail.event, full);
    assert_eq!(detail.dedupe_key.as_deref(), Some("order-42"));
    assert_eq!(detail.source_name, "orders");
    assert_eq!(detail.received_at, full.received_at);
}

async fn claim_respects_triggers_and_limit(store: Arc<dyn Store>) {
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
        vec![a1.id],
        "oldest first, limit respected"
    );
    assert_eq!(first[0].trigger, "alpha");
    assert_eq!(first[0].attempt, 1);
    assert!(first[0].claimed_at >= first[0].created_at);

    let rest = claim(&store, &["alpha", "beta"], 10).await;
    let mut got = event_ids(&rest);
    got.sort();
    let mut want = vec![b.id, a2.id];
    want.sort();
    assert_eq!(got, want);
    assert!(claim(&store, &["alpha", "beta"], 10).await.is_empty());
}

async fn claims_never_share_a_live_lease(store: Arc<dyn Store>) {
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

async fn released_lease_refuses_a_late_finish(store: Arc<dyn Store>) {
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

async fn heartbeat_extends_the_lease(store: Arc<dyn Store>) {
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
    assert_eq!(store.heartbeat(&[bogus], LEASE).await.unwrap(), 0);
    assert_eq!(store.heartbeat(&[claimed.lease], LEASE).await.unwrap(), 1);

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
        0,
        "a finished lease is gone"
    );
}

async fn expired_lease_is_reclaimed_as_abandoned(store: Arc<dyn Store>) {
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
    assert_eq!(store.heartbeat(&[lost.lease], LEASE).await.unwrap(), 0);
}

async fn retry_waits_for_its_run_at(store: Arc<dyn Store>) {
    let (later, sooner) = (event("s", "x"), event("s", "x"));
    store
        .append(&[to(&later, &["t"]), to(&sooner, &["t"])])
        .await
        .unwrap();
    let claimed = claim(&store, &["t"], 2).await;
    assert_eq!(event_ids(&claimed), vec![later.id, sooner.id]);

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
        vec![sooner.id],
        "only the retry whose time has come"
    );
    assert_eq!(again[0].attempt, 2);
    assert_eq!(
        store.next_run_at(&names(&["t"])).await.unwrap(),
        Some(retry_at)
    );
    assert_eq!(store.next_run_at(&names(&["other"])).await.unwrap(), None);
}

async fn ordering_key_runs_one_at_a_time_in_order(store: Arc<dyn Store>) {
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
        vec![a1.id, b1.id, c1.id],
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
        vec![other.id]
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
    assert_eq!(event_ids(&retried), vec![a1.id]);
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
    let mut want = vec![a2.id, c2.id];
    want.sort();
    assert_eq!(got, want);
}

async fn replay_dead_creates_a_new_delivery(store: Arc<dyn Store>) {
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
    assert_eq!((dead[0].delivery_id, dead[0].event_id), (dead_id, e.id));
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
    assert_eq!((replay.event_id, replay.trigger.as_str()), (e.id, "t"));
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

async fn purge_dead_deletes_matching_dead_letters(store: Arc<dyn Store>) {
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

async fn list_events_filters(store: Arc<dyn Store>) {
    let t0 = micros(Utc::now() - TimeDelta::minutes(10));
    let mut e1 = event("s1", "a");
    let mut e2 = event("s2", "b");
    let mut e3 = event("s1", "b");
    assert!(
        e1.id < e2.id && e2.id < e3.id,
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
        vec![e3.id, e2.id, e1.id],
        "newest first, 0 = no limit"
    );
    assert_eq!(
        list(EventQuery {
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![e3.id]
    );
    assert_eq!(
        list(EventQuery {
            source: Some("s1".into()),
            ..Default::default()
        })
        .await,
        vec![e3.id, e1.id]
    );
    assert_eq!(
        list(EventQuery {
            ty: Some("b".into()),
            ..Default::default()
        })
        .await,
        vec![e3.id, e2.id]
    );
    assert_eq!(
        list(EventQuery {
            trigger: Some("t2".into()),
            ..Default::default()
        })
        .await,
        vec![e3.id, e2.id]
    );
    assert_eq!(
        list(EventQuery {
            status: Some(DeliveryStatus::Dead),
            ..Default::default()
        })
        .await,
        vec![e1.id]
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
        vec![e3.id, e2.id]
    );
    assert_eq!(
        list(EventQuery {
            after: Some(e1.id),
            ..Default::default()
        })
        .await,
        vec![e2.id, e3.id],
        "oldest first"
    );
    assert_eq!(
        list(EventQuery {
            after: Some(e1.id),
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![e2.id]
    );

    let summaries = store.list_events(&EventQuery::default()).await.unwrap();
    let (s3, s1) = (&summaries[0], &summaries[2]);
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

async fn events_between_is_a_half_open_window(store: Arc<dyn Store>) {
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
    let ids = |found: Vec<Event>| found.iter().map(|e| e.id).collect::<Vec<_>>();

    let window = store
        .events_between(t0, t0 + TimeDelta::seconds(2), None, 0)
        .await
        .unwrap();
    assert_eq!(window[0], events[0]);
    assert_eq!(ids(window), vec![events[0].id, events[1].id]);
    let only_a = store
        .events_between(t0, t0 + TimeDelta::seconds(3), Some("a"), 0)
        .await
        .unwrap();
    assert_eq!(ids(only_a), vec![events[0].id, events[2].id]);
    let limited = store
        .events_between(t0, t0 + TimeDelta::seconds(3), None, 1)
        .await
        .unwrap();
    assert_eq!(ids(limited), vec![events[0].id]);
}

async fn get_event_includes_deliveries_and_attempts(store: Arc<dyn Store>) {
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

    let detail = store.get_event(e.id).await.unwrap().expect("stored");
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

async fn add_deliveries_to_an_existing_event(store: Arc<dyn Store>) {
    let e = event("s", "x");
    assert_eq!(
        store.append(&[to(&e, &[])]).await.unwrap(),
        vec![Appended::Created(e.id)]
    );
    assert!(claim(&store, &["t1", "t2"], 10).await.is_empty());

    let wanted = [
        NewDelivery {
            trigger: "t1".to_owned(),
            ordering_key: Some("k".to_owned()),
        },
        NewDelivery {
            trigger: "t2".to_owned(),
            ordering_key: None,
        },
    ];
    let ids = store.add_deliveries(e.id, &wanted, Some(99)).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);
    let detail = store.get_event(e.id).await.unwrap().unwrap();
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

async fn stats_reports_depth_age_and_dead(store: Arc<dyn Store>) {
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

async fn migrate_is_idempotent(store: Arc<dyn Store>) {
    let e = event("s", "x");
    store.append(&[to(&e, &["t"])]).await.unwrap();
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");
    assert!(
        store.get_event(e.id).await.unwrap().is_some(),
        "migrating again keeps the data"
    );
}

// ---------------------------------------------------------------------------------
// Backend-specific

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data_across_calls() {
    let store = switchyard_store::open("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let e = event("s", "x");
    store.append(&[to(&e, &["t"])]).await.unwrap();
    // Separate calls use the pool's one connection, which must stay the same database.
    assert!(store.get_event(e.id).await.unwrap().is_some());
    assert_eq!(claim(&store, &["t"], 10).await.len(), 1);
}

#[tokio::test]
async fn sqlite_wait_for_work_never_returns() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(50), store.wait_for_work()).await;
    assert!(waited.is_err(), "SQLite has no cross-process signal");
}

#[tokio::test]
async fn open_rejects_unknown_schemes() {
    let opened = switchyard_store::open("mysql://root:secret@localhost/db").await;
    match opened {
        Err(StoreError::Invalid(message)) => assert!(!message.contains("secret"), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a mysql URL"),
    }
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable() {
    let opened = PostgresStore::open("postgres://postgres@127.0.0.1:1/none").await;
    assert!(
        matches!(opened, Err(StoreError::Unavailable(_))),
        "{:?}",
        opened.err()
    );
}

#[tokio::test]
async fn postgres_concurrent_migrations_agree() {
    with_pg_db(|db| async move {
        let (a, b, c) = (db.open().await, db.open().await, db.open().await);
        let (ra, rb, rc) = tokio::join!(a.migrate(), b.migrate(), c.migrate());
        ra.expect("first migrator");
        rb.expect("second migrator");
        rc.expect("third migrator");
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM switchyard._sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .expect("bookkeeping lives in the switchyard schema");
        assert_eq!(applied, 1);
        let public: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            public, 0,
            "nothing is created outside the switchyard schema"
        );
        conn.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_claimers_never_share_a_delivery() {
    with_pg_db(|db| async move {
        let (a, b) = (db.open().await, db.open().await);
        a.migrate().await.unwrap();
        let batch: Vec<NewEvent> = (0..300).map(|_| to(&event("s", "x"), &["t"])).collect();
        a.append(&batch).await.unwrap();

        let mut workers = Vec::new();
        for i in 0..8 {
            let store: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim(&names(&["t"]), 7, LEASE).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    let results: Vec<Finished> = claimed
                        .iter()
                        .map(|c| finished(c, AttemptOutcome::Succeeded, None, None))
                        .collect();
                    assert!(store.finish(&results).await.unwrap().iter().all(|ok| *ok));
                    mine.extend(claimed.iter().map(|c| c.lease.delivery_id));
                }
            }));
        }
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.unwrap());
        }
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(all.len(), 300, "every delivery claimed exactly once");
        assert_eq!(unique.len(), 300, "a delivery was claimed twice");
    })
    .await;
}

#[tokio::test]
async fn postgres_wait_for_work_wakes_on_append_elsewhere() {
    with_pg_db(|db| async move {
        let (waiter, appender) = (db.open().await, db.open().await);
        waiter.migrate().await.unwrap();
        let bound = Duration::from_secs(5);
        tokio::time::timeout(bound, waiter.wait_for_work())
            .await
            .expect("the first call returns once listening")
            .unwrap();
        let idle = tokio::time::timeout(Duration::from_millis(200), waiter.wait_for_work()).await;
        assert!(idle.is_err(), "woke up with no work");

        // An event with no deliveries is no work.
        appender.append(&[to(&event("s", "x"), &[])]).await.unwrap();
        let idle = tokio::time::timeout(Duration::from_millis(200), waiter.wait_for_work()).await;
        assert!(idle.is_err(), "woke up for an event without deliveries");

        let wait = tokio::spawn({
            let waiter = waiter.clone();
            async move { tokio::time::timeout(bound, waiter.wait_for_work()).await }
        });
        appender
            .append(&[to(&event("s", "x"), &["t"])])
            .await
            .unwrap();
        wait.await.unwrap().expect("woken within 5 s").unwrap();
    })
    .await;
}
