//! Cron across real processes: exactly once with two engines on one Postgres (one of
//! them killed mid-run), and catch-up after a restart on SQLite.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use switchyard_store::{EventQuery, Store};

use crate::crash::{Workdir, cli, free_port, spawn, wait_ready};
use crate::support::{Backend, eventually, fresh_store, open};

/// The scheduled times of every tick in the log, oldest first, with duplicates kept.
async fn ticks(store: &dyn Store) -> Vec<DateTime<Utc>> {
    let query = EventQuery {
        source: Some("every-second".into()),
        limit: 10_000,
        ..EventQuery::default()
    };
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    for summary in store.list_events(&query).await.unwrap() {
        let event = store.get_event(summary.id).await.unwrap().unwrap().event;
        assert_eq!(event.ty, "cron.tick");
        times.push(event.time);
    }
    times.sort();
    times
}

fn assert_exactly_once_without_gaps(times: &[DateTime<Utc>]) {
    let unique: BTreeSet<_> = times.iter().collect();
    assert_eq!(
        unique.len(),
        times.len(),
        "a scheduled time fired twice: {times:?}"
    );
    for pair in times.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "a gap between {} and {}",
            pair[0],
            pair[1]
        );
    }
}

const SCHEDULE: &str = r#"
sources:
  every-second: { cron: { schedule: "* * * * * *", catch_up: CATCH_UP, data: { job: tick } } }
triggers:
  print: { source: every-second, handler: { log: { data: false } } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_fire_each_second_exactly_once_even_when_one_dies() {
    let dir = Workdir::new();
    let store_url = fresh_store(Backend::Postgres).await;
    let yaml = SCHEDULE.replace("CATCH_UP", "all");
    let a_config = dir.config_named("a.yaml", &store_url, free_port(), &yaml);
    let b_config = dir.config_named("b.yaml", &store_url, free_port(), &yaml);
    let mut a = spawn(&a_config);
    let _b = spawn(&b_config);
    let store = open(&store_url).await;
    eventually(Duration::from_secs(30), "5 fires", || async {
        (ticks(&*store).await.len() >= 5).then_some(())
    })
    .await;
    a.0.kill().expect("kill -9 one engine");
    a.0.wait().unwrap();
    let before = ticks(&*store).await.len();
    eventually(
        Duration::from_secs(30),
        "10 more fires from the survivor",
        || async { (ticks(&*store).await.len() >= before + 10).then_some(()) },
    )
    .await;
    let times = ticks(&*store).await;
    assert!(times.len() >= 15);
    assert_exactly_once_without_gaps(&times);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_catches_up_every_missed_fire_on_sqlite() {
    let dir = Workdir::new();
    let store_url = fresh_store(Backend::Sqlite).await;
    let port = free_port();
    let config = dir.config(&store_url, port, &SCHEDULE.replace("CATCH_UP", "all"));
    let store = open(&store_url).await;
    let mut first = spawn(&config);
    eventually(Duration::from_secs(30), "3 fires", || async {
        (ticks(&*store).await.len() >= 3).then_some(())
    })
    .await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let down_at = ticks(&*store).await.last().copied().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _second = spawn(&config);
    wait_ready(port).await;
    let times = eventually(
        Duration::from_secs(30),
        "fires after the restart",
        || async {
            let times = ticks(&*store).await;
            (times
                .last()
                .is_some_and(|t| (*t - down_at).num_seconds() >= 8))
            .then_some(times)
        },
    )
    .await;
    assert_exactly_once_without_gaps(&times);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_none_records_every_skipped_fire() {
    let dir = Workdir::new();
    let store_url = fresh_store(Backend::Sqlite).await;
    let port = free_port();
    let config = dir.config(&store_url, port, &SCHEDULE.replace("CATCH_UP", "none"));
    let store = open(&store_url).await;
    let mut first = spawn(&config);
    eventually(Duration::from_secs(30), "2 fires", || async {
        (ticks(&*store).await.len() >= 2).then_some(())
    })
    .await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _second = spawn(&config);
    wait_ready(port).await;
    let skipped = eventually(
        Duration::from_secs(30),
        "skipped fires to be recorded",
        || async {
            let skipped = store.list_skipped("every-second", 100).await.unwrap();
            (!skipped.is_empty()).then_some(skipped)
        },
    )
    .await;
    assert!(
        skipped.len() >= 2,
        "about 4 seconds were missed beyond the on-time window: {skipped:?}"
    );
    let fired: BTreeSet<DateTime<Utc>> = ticks(&*store).await.into_iter().collect();
    for time in &skipped {
        assert!(!fired.contains(time), "{time} was both skipped and fired");
    }
    let output = cli(&config, &["schedules", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["source"], "every-second");
    assert_eq!(report[0]["next"].as_array().unwrap().len(), 5);
    assert!(!report[0]["skipped"].as_array().unwrap().is_empty());
    assert!(report[0]["last"][0]["lateness_ms"].is_i64());
}
