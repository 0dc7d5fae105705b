//! One behavioural suite, run against both backends.
//!
//! Each scenario in `store/queue.rs`, `store/inspect.rs`, `store/sources.rs` and
//! `store/retention.rs` is written once as `async fn(Arc<dyn Store>)` and instantiated
//! here for SQLite (a fresh temporary file) and Postgres (a fresh database created from the admin URL in
//! `SWITCHYARD_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Postgres must be reachable: the Postgres tests fail, never skip, without it.

#[path = "store/inspect.rs"]
mod inspect;
#[path = "store/poison.rs"]
mod poison;
#[path = "store/queue.rs"]
mod queue;
#[path = "store/retention.rs"]
mod retention;
#[path = "store/sources.rs"]
mod sources;
#[path = "store/support.rs"]
mod support;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use switchyard_store::{
    AttemptOutcome, Finished, NewEvent, PostgresStore, SqliteStore, Store, StoreError,
};
use uuid::Uuid;

use crate::support::*;

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

/// Instantiates each `module::scenario` as `sqlite::scenario` and `postgres::scenario`.
macro_rules! both_backends {
    ($($module:ident::$scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::on_sqlite(crate::$module::$scenario).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::on_postgres(crate::$module::$scenario).await;
                }
            )*
        }
    };
}

both_backends!(
    queue::append_dedupes_within_and_across_batches,
    queue::append_round_trips_every_event_field,
    queue::append_keeps_the_first_of_two_entries_with_one_id,
    queue::append_takes_a_batch_larger_than_one_insert,
    queue::append_claiming_creates_claimed_deliveries,
    queue::claim_respects_triggers_and_limit,
    queue::claims_never_share_a_live_lease,
    queue::released_lease_refuses_a_late_finish,
    queue::heartbeat_extends_the_lease,
    queue::expired_lease_is_reclaimed_as_abandoned,
    queue::retry_waits_for_its_run_at,
    queue::ordering_key_runs_one_at_a_time_in_order,
    inspect::replay_dead_creates_a_new_delivery,
    inspect::purge_dead_deletes_matching_dead_letters,
    inspect::list_events_filters,
    inspect::events_between_is_a_half_open_window,
    inspect::cron_fires_commit_with_skips_and_position,
    inspect::get_event_includes_deliveries_and_attempts,
    inspect::claimed_deliveries_are_reported_running,
    inspect::add_deliveries_to_an_existing_event,
    inspect::stats_reports_depth_age_and_dead,
    inspect::migrate_is_idempotent,
    sources::positions_commit_with_their_events,
    sources::rejected_inputs_are_kept_once_newest_first,
    poison::unstorable_texts_are_recorded_safely,
    poison::attempt_output_is_kept_for_every_outcome,
    poison::keys_too_long_for_an_index_still_dedupe_and_order,
    retention::old_finished_events_go_and_unfinished_ones_stay,
    retention::dead_letters_expire_by_their_own_period,
    retention::sources_override_the_periods,
    retention::batches_go_oldest_first,
);

// ---------------------------------------------------------------------------------
// Backend-specific

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data_across_calls() {
    let store = switchyard_store::open("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let e = event("s", "x");
    store.append(&[to(&e, &["t"])]).await.unwrap();
    // Separate calls use the pool's one connection, which must stay the same database.
    assert!(store.get_event(e.switchyard_id).await.unwrap().is_some());
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

/// Appends five events of which the store refuses the middle one, as a batch and then
/// in parts: the batch fails as `Rejected`, and only the refused event fails in parts.
async fn a_refused_event_fails_alone(store: Arc<dyn Store>) {
    let batch: Vec<NewEvent> = (0..5)
        .map(|n| {
            let subject = if n == 2 { "poison" } else { "fine" };
            to(&event("s", "x").with_subject(subject), &["t"])
        })
        .collect();
    let refused = store.append(&batch).await;
    assert!(
        matches!(refused, Err(StoreError::Rejected(_))),
        "{refused:?}"
    );
    let parts =
        switchyard_store::split_refused(batch.len(), |part| store.append(&batch[part])).await;
    let mut created = 0;
    for (part, result) in &parts {
        match result {
            Ok(appended) => created += appended.len(),
            Err(StoreError::Rejected(_)) => assert_eq!(*part, 2..3, "only the poison is refused"),
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 4);
    assert_eq!(claim(&store, &["t"], 10).await.len(), 4);
}

#[tokio::test]
async fn sqlite_refusals_are_rejected_and_split_off() {
    let path = std::env::temp_dir().join(format!(
        "switchyard-store-test-{}.db",
        Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = <sqlx::SqliteConnection as Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.subject = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poison'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    a_refused_event_fails_alone(Arc::new(store)).await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        // The file may already be gone.
        let _ = std::fs::remove_file(file);
    }
}

#[tokio::test]
async fn postgres_refusals_are_rejected_and_split_off() {
    with_pg_db(|db| async move {
        let store = db.open().await;
        store.migrate().await.unwrap();
        // Postgres refuses NUL in text on its own: no fault needs injecting.
        let nul = event("s", "x").with_subject("a\0b");
        let refused = store.append(&[to(&nul, &["t"])]).await;
        assert!(matches!(refused, Err(StoreError::Rejected(_))), "{refused:?}");
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let install = String::from(
            "CREATE FUNCTION switchyard.poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.subject = 'poison' THEN RAISE EXCEPTION 'poison' USING ERRCODE = '22000'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER poison BEFORE INSERT ON switchyard.events
                 FOR EACH ROW EXECUTE FUNCTION switchyard.poison();",
        );
        sqlx::Executor::execute(&mut conn, install.as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        a_refused_event_fails_alone(store).await;
    })
    .await;
}

/// The pool only times out; the error carries what a direct connection met instead,
/// and not the password.
#[tokio::test]
async fn postgres_unreachable_names_the_cause() {
    let opened = PostgresStore::open("postgres://postgres:hunter2@127.0.0.1:1/none").await;
    let Err(error @ StoreError::Unreachable { .. }) = opened else {
        panic!("expected Unreachable, got {:?}", opened.err());
    };
    let message = error.to_string();
    assert!(message.contains("onnection refused"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

/// What a database's schema check says as its bookkeeping is changed, one way at a
/// time: `exec` runs a statement on it, and `table` is sqlx's bookkeeping table.
async fn schema_check_names_each_mismatch<F, Fut>(store: Arc<dyn Store>, table: &str, exec: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let fails_with = |expected: &'static str| {
        let store = store.clone();
        async move {
            match store.check_schema().await {
                Err(StoreError::Schema(message)) => {
                    assert!(message.contains(expected), "{message}");
                    assert!(message.contains("switchyard migrate"), "{message}");
                }
                other => panic!("expected a schema error with {expected:?}, got {other:?}"),
            }
        }
    };
    fails_with("no Switchyard schema").await;
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.first().map(|m| m.version), Some(1));
    assert_eq!(applied[0].description, "event log");
    let latest = applied.last().unwrap().version;
    assert!(store.migrate().await.unwrap().is_empty(), "applied twice");
    store
        .check_schema()
        .await
        .expect("a migrated schema checks");

    exec(format!(
        "UPDATE {table} SET success = false WHERE version = 1"
    ))
    .await;
    fails_with("migration 1 (event log) failed part-way").await;
    exec(format!(
        "UPDATE {table} SET success = true WHERE version = 1"
    ))
    .await;

    exec(format!(
        "UPDATE {table} SET checksum = checksum || checksum WHERE version = 2"
    ))
    .await;
    fails_with("migration 2 (schedules) in the store differs").await;
    exec(format!(
        "UPDATE {table} SET checksum = substr(checksum, 1, length(checksum) / 2) WHERE version = 2"
    ))
    .await;
    store
        .check_schema()
        .await
        .expect("the checksum is restored");

    exec(format!(
        "INSERT INTO {table} (version, description, success, checksum, execution_time)
         SELECT 999, 'future', true, checksum, 0 FROM {table} WHERE version = 1"
    ))
    .await;
    fails_with("newer than this switchyard: it has migration 999").await;
    exec(format!("DELETE FROM {table} WHERE version = 999")).await;
    // The latest migration's record set aside: the schema looks one migration old.
    exec(format!(
        "UPDATE {table} SET version = -version WHERE version = {latest}"
    ))
    .await;
    fails_with("older than this switchyard").await;
    exec(format!(
        "UPDATE {table} SET version = -version WHERE version = -{latest}"
    ))
    .await;
    store.check_schema().await.expect("the record is back");
}

#[tokio::test]
async fn sqlite_schema_check_names_each_mismatch() {
    let path =
        std::env::temp_dir().join(format!("switchyard-schema-{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", path.display());
    let missing = switchyard_store::open_existing(&url).await;
    match missing {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("opened a missing file: {:?}", other.err()),
    }
    assert!(!path.exists(), "open_existing created the file");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    let exec = |statement: String| {
        let url = url.clone();
        async move {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(&statement).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    };
    schema_check_names_each_mismatch(store, "_sqlx_migrations", exec).await;
    switchyard_store::open_existing(&url)
        .await
        .expect("an existing, current store opens");
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        // The WAL files may already be gone.
        let _ = std::fs::remove_file(file);
    }
}

#[tokio::test]
async fn postgres_schema_check_names_each_mismatch() {
    with_pg_db(|db| async move {
        let store: Arc<dyn Store> = db.open().await;
        let exec = |statement: String| {
            let url = db.url.clone();
            async move {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                sqlx::query(&statement).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        };
        schema_check_names_each_mismatch(store, "switchyard._sqlx_migrations", exec).await;
        switchyard_store::open_existing(&db.url)
            .await
            .expect("a current store opens");
    })
    .await;
}

#[tokio::test]
async fn postgres_concurrent_migrations_agree() {
    with_pg_db(|db| async move {
        let (a, b, c) = (db.open().await, db.open().await, db.open().await);
        let (ra, rb, rc) = tokio::join!(a.migrate(), b.migrate(), c.migrate());
        let mut reported: Vec<i64> = [
            ra.expect("first migrator"),
            rb.expect("second migrator"),
            rc.expect("third migrator"),
        ]
        .into_iter()
        .flatten()
        .map(|migration| migration.version)
        .collect();
        reported.sort_unstable();
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM switchyard._sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .expect("bookkeeping lives in the switchyard schema");
        let files = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../migrations/postgres"
        ))
        .unwrap()
        .count();
        assert_eq!(
            applied,
            i64::try_from(files).unwrap(),
            "every migration applied once"
        );
        assert_eq!(
            reported,
            (1..=applied).collect::<Vec<_>>(),
            "each migration is reported by the one migrator that applied it"
        );
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

        // Nor is a delivery created claimed: no other process may take it.
        let mut claimed = to(&event("s", "x"), &["t"]);
        claimed.deliveries[0].claim = true;
        appender
            .append_claiming(&[claimed], Duration::from_secs(30))
            .await
            .unwrap();
        let idle = tokio::time::timeout(Duration::from_millis(200), waiter.wait_for_work()).await;
        assert!(idle.is_err(), "woke up for a delivery claimed on append");

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

/// Reads one row of statistics counters with `query` until `published` accepts it, for
/// at most 30 s. Postgres publishes a backend's counters when the backend goes idle,
/// or 10 s later if it published them less than a second before, so a test polls for
/// the ones it waits on.
async fn published_counters<T>(url: &str, query: &str, published: impl Fn(&T) -> bool) -> T
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut observer = PgConnection::connect(url).await.unwrap();
    let mut counters = None;
    for _ in 0..300 {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut observer)
            .await
            .unwrap();
        let read: T = sqlx::query_as(query)
            .fetch_one(&mut observer)
            .await
            .unwrap();
        if published(&read) {
            counters = Some(read);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    observer.close().await.unwrap();
    counters.expect("the counters were not published within 30 s")
}

/// A claim changes no indexed column, so Postgres updates each claimed row in place on
/// its page (a HOT update) and writes no index entry; see migration 0007.
#[tokio::test]
async fn postgres_claims_are_hot_updates() {
    with_pg_db(|db| async move {
        let store = db.open().await;
        store.migrate().await.unwrap();
        let batch: Vec<NewEvent> = (0..200).map(|_| to(&event("s", "x"), &["t"])).collect();
        store.append(&batch).await.unwrap();
        let claimed = store.claim(&names(&["t"]), 200, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 200);

        let (updated, hot): (i64, i64) = published_counters(
            &db.url,
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE relid = 'switchyard.deliveries'::regclass",
            |&(updated, _)| updated >= 200,
        )
        .await;
        assert_eq!(updated, 200, "more updates than the claim's");
        assert_eq!(hot, 200, "claims that were not HOT updates");
    })
    .await;
}

/// Claims, heartbeats and finishes plan on indexes even when the queue has outrun its
/// statistics (analyzed empty, then filled), as the store's planner settings for them
/// ensure: a claim of 256 walks about 256 entries of `deliveries_runnable` instead of
/// every pending one, and no statement reads the whole table.
#[tokio::test]
async fn postgres_queue_statements_plan_on_indexes_when_statistics_are_stale() {
    with_pg_db(|db| async move {
        let store = db.open().await;
        store.migrate().await.unwrap();
        let mut admin = PgConnection::connect(&db.url).await.unwrap();
        for statement in [
            "ALTER TABLE switchyard.deliveries SET (autovacuum_enabled = false)",
            "ANALYZE switchyard.deliveries",
        ] {
            sqlx::query(statement).execute(&mut admin).await.unwrap();
        }
        admin.close().await.unwrap();
        const PENDING: i64 = 20_000;
        for _ in 0..PENDING / 1000 {
            let batch: Vec<NewEvent> = (0..1000).map(|_| to(&event("s", "x"), &["t"])).collect();
            store.append(&batch).await.unwrap();
        }

        const COUNTERS: &str = "
            SELECT t.n_tup_ins, t.n_tup_upd, t.seq_scan, i.idx_tup_read
            FROM pg_stat_user_tables t, pg_stat_user_indexes i
            WHERE t.relid = 'switchyard.deliveries'::regclass
              AND i.indexrelid = 'switchyard.deliveries_runnable'::regclass";
        type Counters = (i64, i64, i64, i64);
        let (_, _, scans_before, read_before) =
            published_counters(&db.url, COUNTERS, |&(inserted, ..): &Counters| {
                inserted >= PENDING
            })
            .await;

        let claimed = store.claim(&names(&["t"]), 256, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 256);
        let leases: Vec<_> = claimed.iter().map(|c| c.lease).collect();
        assert_eq!(
            store.heartbeat(&leases, LEASE).await.unwrap(),
            vec![true; 256]
        );
        let results: Vec<Finished> = claimed
            .iter()
            .map(|c| finished(c, AttemptOutcome::Succeeded, None, None))
            .collect();
        assert!(store.finish(&results).await.unwrap().iter().all(|ok| *ok));

        let (_, _, scans, read) =
            published_counters(&db.url, COUNTERS, |&(_, updated, ..): &Counters| {
                updated >= 3 * 256
            })
            .await;
        assert_eq!(scans - scans_before, 0, "a statement read the whole table");
        let walked = read - read_before;
        assert!(
            walked < 1_000,
            "the claim of 256 read {walked} entries of deliveries_runnable"
        );
    })
    .await;
}

/// Reclaims read the whole due queue, so one process at a time runs one; a process
/// that finds another's under way reclaims nothing.
#[tokio::test]
async fn postgres_reclaims_run_one_process_at_a_time() {
    with_pg_db(|db| async move {
        let store = db.open().await;
        store.migrate().await.unwrap();
        store.append(&[to(&event("s", "x"), &["t"])]).await.unwrap();
        let lease = Duration::from_millis(50);
        assert_eq!(
            store.claim(&names(&["t"]), 1, lease).await.unwrap().len(),
            1
        );
        tokio::time::sleep(lease * 2).await;

        let mut other = PgConnection::connect(&db.url).await.unwrap();
        let mut reclaiming = other.begin().await.unwrap();
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(6005366778094636109)")
                .fetch_one(&mut *reclaiming)
                .await
                .unwrap();
        assert!(taken);
        assert_eq!(
            store.reclaim_expired().await.unwrap(),
            0,
            "reclaimed beside another"
        );

        reclaiming.rollback().await.unwrap();
        other.close().await.unwrap();
        assert_eq!(store.reclaim_expired().await.unwrap(), 1);
    })
    .await;
}

/// The number of rows in `switchyard.{table}`.
async fn rows_in(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM switchyard.{table}"))
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Deleting events deletes their deliveries and those deliveries' attempts, and
/// truncating the events truncates both: migration 0008's triggers, in place of a
/// foreign key's cascade.
#[tokio::test]
async fn postgres_deleting_events_deletes_their_deliveries() {
    with_pg_db(|db| async move {
        let store = db.open().await;
        store.migrate().await.unwrap();
        let (gone, kept) = (event("s", "x"), event("s", "x"));
        store
            .append(&[to(&gone, &["t", "u"]), to(&kept, &["t"])])
            .await
            .unwrap();
        let retried = store.claim(&names(&["u"]), 1, LEASE).await.unwrap();
        assert_eq!(retried.len(), 1);
        let retry = finished(
            &retried[0],
            AttemptOutcome::Retry,
            Some(chrono::Utc::now()),
            Some("boom"),
        );
        assert_eq!(store.finish(&[retry]).await.unwrap(), vec![true]);

        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        assert_eq!(
            rows_in(&mut conn, "earlier_attempts").await,
            1,
            "the retry left an attempt row"
        );

        sqlx::query("DELETE FROM switchyard.events WHERE id = $1")
            .bind(gone.switchyard_id)
            .execute(&mut conn)
            .await
            .unwrap();
        let left: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM switchyard.deliveries")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            left,
            vec![kept.switchyard_id],
            "only the kept event's delivery is left"
        );
        assert_eq!(
            rows_in(&mut conn, "earlier_attempts").await,
            0,
            "the deleted delivery's attempts went with it"
        );

        sqlx::query("TRUNCATE switchyard.events")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            rows_in(&mut conn, "deliveries").await,
            0,
            "truncating the events truncates the deliveries"
        );
        conn.close().await.unwrap();
    })
    .await;
}

/// Adding deliveries to an event that another transaction is deleting waits for that
/// transaction, then finds the event gone and adds nothing: no delivery outlives its
/// event.
#[tokio::test]
async fn postgres_add_deliveries_waits_for_a_delete_of_its_event() {
    with_pg_db(|db| async move {
        let store = db.open().await;
        store.migrate().await.unwrap();
        let e = event("s", "x");
        store.append(&[to(&e, &[])]).await.unwrap();

        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let mut deleting = conn.begin().await.unwrap();
        sqlx::query("DELETE FROM switchyard.events WHERE id = $1")
            .bind(e.switchyard_id)
            .execute(&mut *deleting)
            .await
            .unwrap();
        let adding = tokio::spawn({
            let store = store.clone();
            async move {
                let wanted = [switchyard_store::NewDelivery {
                    trigger: "t".to_owned(),
                    ordering_key: None,
                    claim: false,
                }];
                store.add_deliveries(e.switchyard_id, &wanted, None).await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!adding.is_finished(), "the add did not wait for the delete");
        deleting.commit().await.unwrap();

        let added = adding.await.unwrap();
        assert!(matches!(added, Err(StoreError::Invalid(_))), "{added:?}");
        assert_eq!(
            rows_in(&mut conn, "deliveries").await,
            0,
            "a delivery outlived its event"
        );
        conn.close().await.unwrap();
    })
    .await;
}

/// Retention races replays of the very events it deletes: a replay that adds a
/// delivery to an event (or turns a dead letter into a new pending delivery) must
/// either fail because the event is gone, or leave the event and its new delivery in
/// place. Retention must never delete an event with an unfinished delivery.
#[tokio::test]
async fn postgres_retention_never_deletes_an_event_a_replay_races() {
    with_pg_db(|db| async move {
        let store: Arc<dyn Store> = db.open().await;
        store.migrate().await.unwrap();
        let received_at = micros(chrono::Utc::now() - chrono::Duration::days(40));
        let events: Vec<_> = (0..300)
            .map(|i| {
                let mut e = event("s", "x");
                e.received_at = received_at;
                to(&e, &[if i < 150 { "ok" } else { "bad" }])
            })
            .collect();
        store.append(&events).await.unwrap();
        for (trigger, outcome) in [("ok", AttemptOutcome::Succeeded), ("bad", AttemptOutcome::Dead)]
        {
            let claimed = claim(&store, &[trigger], 150).await;
            let results: Vec<Finished> = claimed
                .iter()
                .map(|c| finished(c, outcome, None, None))
                .collect();
            assert!(store.finish(&results).await.unwrap().iter().all(|ok| *ok));
        }
        let dead: Vec<i64> = store
            .list_dead(&switchyard_store::DeadQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .map(|d| d.delivery_id)
            .collect();
        assert_eq!(dead.len(), 150);

        let policy = switchyard_core::config::RetentionConfig::default();
        let later = chrono::Utc::now() + chrono::Duration::days(91);
        let deleting = tokio::spawn({
            let store = store.clone();
            async move {
                let mut total = switchyard_store::RetentionDeleted::default();
                loop {
                    let batch = store.delete_expired(&policy, later, 7).await.unwrap();
                    if batch.is_empty() {
                        return total;
                    }
                    total += batch;
                }
            }
        });
        let adding = tokio::spawn({
            let store = store.clone();
            let ids: Vec<Uuid> = events[..150].iter().map(|e| e.event.switchyard_id).collect();
            async move {
                let again = [switchyard_store::NewDelivery {
                    trigger: "again".to_owned(),
                    ordering_key: None,
                    claim: false,
                }];
                let mut kept = Vec::new();
                for id in ids.into_iter().rev() {
                    match store.add_deliveries(id, &again, None).await {
                        Ok(_) => kept.push(id),
                        Err(StoreError::Invalid(_)) => {}
                        Err(other) => panic!("add_deliveries: {other}"),
                    }
                }
                kept
            }
        });
        let replaying = tokio::spawn({
            let store = store.clone();
            async move {
                let mut kept = Vec::new();
                for id in dead.into_iter().rev() {
                    if !store.replay_dead(&[id]).await.unwrap().is_empty() {
                        kept.push(id);
                    }
                }
                kept
            }
        });
        let deleted = deleting.await.unwrap();
        let added = adding.await.unwrap();
        let replayed = replaying.await.unwrap();
        assert!(deleted.events > 0, "retention deleted nothing: {deleted:?}");
        assert_eq!(
            deleted.events as usize + added.len() + replayed.len(),
            300,
            "every event is either deleted or kept by its new delivery: {deleted:?}, {} added, {} replayed",
            added.len(),
            replayed.len()
        );
        for id in added {
            let detail = store.get_event(id).await.unwrap();
            let detail = detail.unwrap_or_else(|| panic!("event {id} lost its new delivery"));
            assert!(detail.deliveries.iter().any(|d| d.trigger == "again"));
        }
        for id in replayed {
            let replay = store.get_delivery(id).await.unwrap();
            let replay = replay.unwrap_or_else(|| panic!("replayed dead letter {id} is gone"));
            assert!(store.get_event(replay.event_id).await.unwrap().is_some());
        }
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let orphans: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM switchyard.deliveries d
             WHERE NOT EXISTS (SELECT 1 FROM switchyard.events e WHERE e.id = d.event_id)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(orphans, 0, "deliveries outlived their events");
        conn.close().await.unwrap();
    })
    .await;
}
