//! The `switchyard` binary as a child process: crash recovery, several processes on
//! one store, and the CLI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_core::Event;
use switchyard_store::{AttemptOutcome, DeliveryStatus, EventQuery, NewDelivery, NewEvent, Store};

use crate::support::{Backend, eventually, fresh_store, open, post_json};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A `switchyard run` child, killed when dropped.
pub struct Engine(pub Child);

impl Drop for Engine {
    fn drop(&mut self) {
        // Already exited is fine: this only makes sure no child outlives the test.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Workdir(pub PathBuf);

impl Workdir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("sy_cli_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn config(&self, store: &str, port: u16, rest: &str) -> PathBuf {
        self.config_named("triggers.yaml", store, port, rest)
    }

    pub fn config_named(&self, name: &str, store: &str, port: u16, rest: &str) -> PathBuf {
        let path = self.0.join(name);
        let text = format!(
            "store: {store}\nhttp: {{ listen: 127.0.0.1:{port} }}\ndispatcher: {{ lease: 2s, poll_interval: 100ms, shutdown_grace: 5s }}\n{rest}"
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn spawn(config: &Path) -> Engine {
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("SWITCHYARD_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("switchyard starts");
    Engine(child)
}

pub fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("switchyard runs")
}

pub async fn wait_ready(port: u16) {
    eventually(
        Duration::from_secs(30),
        "the engine to be ready",
        || async move {
            let response = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .ok()?;
            response.status().is_success().then_some(())
        },
    )
    .await;
}

async fn statuses(store: &dyn Store) -> Vec<(DeliveryStatus, Vec<AttemptOutcome>)> {
    let events = store
        .list_events(&EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for summary in events {
        let detail = store.get_event(summary.id).await.unwrap().unwrap();
        for d in detail.deliveries {
            out.push((d.status, d.attempt_log.iter().map(|a| a.outcome).collect()));
        }
    }
    out
}

async fn kill_mid_handler_then_restart(backend: Backend) {
    let dir = Workdir::new();
    let store_url = fresh_store(backend).await;
    let port = free_port();
    let config = dir.config(
        &store_url,
        port,
        r#"
sources: { jobs: { http: { path: /jobs } } }
triggers:
  slow: { source: jobs, handler: { command: { program: sh, args: ["-c", "sleep 2"] } }, concurrency: 4 }
"#,
    );
    let mut first = spawn(&config);
    wait_ready(port).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut accepted = Vec::new();
    for n in 0..6 {
        let response = post_json(addr, "/jobs", json!({ "n": n }), &[]).await;
        assert_eq!(response.status(), 202);
        accepted.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let store = open(&store_url).await;
    eventually(
        Duration::from_secs(20),
        "a handler to be running",
        || async {
            statuses(&*store)
                .await
                .iter()
                .any(|(s, _)| *s == DeliveryStatus::Running)
                .then_some(())
        },
    )
    .await;
    first.0.kill().expect("kill -9");
    first.0.wait().unwrap();

    let _second = spawn(&config);
    wait_ready(port).await;
    let settled = eventually(
        Duration::from_secs(60),
        "every delivery to succeed",
        || async {
            let all = statuses(&*store).await;
            all.iter()
                .all(|(s, _)| *s == DeliveryStatus::Succeeded)
                .then_some(all)
        },
    )
    .await;
    assert_eq!(
        settled.len(),
        accepted.len(),
        "every accepted event has its delivery"
    );
    let abandoned: Vec<_> = settled
        .iter()
        .filter(|(_, log)| log.contains(&AttemptOutcome::Abandoned))
        .collect();
    assert!(
        !abandoned.is_empty(),
        "the attempt cut short by kill -9 is in the log: {settled:?}"
    );
    for (_, log) in abandoned {
        assert_eq!(log.last(), Some(&AttemptOutcome::Succeeded));
    }
}

async fn two_processes_drain_a_backlog_without_doubles(backend: Backend) {
    const EVENTS: usize = 200;
    let dir = Workdir::new();
    let store_url = fresh_store(backend).await;
    let marks = dir.0.join("handled.log");
    let store = open(&store_url).await;
    let backlog: Vec<NewEvent> = (0..EVENTS)
        .map(|n| NewEvent {
            event: Event::new("jobs", "/jobs", "http.request").with_json(json!({ "n": n })),
            deliveries: vec![NewDelivery {
                trigger: "mark".into(),
                ordering_key: None,
                claim: false,
            }],
        })
        .collect();
    store.append(&backlog).await.unwrap();
    let handler = format!(
        r#"{{ command: {{ program: sh, args: ["-c", "echo $SWITCHYARD_IDEMPOTENCY_KEY >> {}"] }} }}"#,
        marks.display()
    );
    let rest = format!(
        "sources: {{ jobs: {{ http: {{ path: /jobs }} }} }}\ntriggers:\n  mark: {{ source: jobs, handler: {handler}, concurrency: 8 }}\n"
    );
    let config_a = dir.config(&store_url, free_port(), &rest);
    let a = spawn(&config_a);
    let config_b = dir.config_named("b.yaml", &store_url, free_port(), &rest);
    let b = spawn(&config_b);
    eventually(Duration::from_secs(90), "the backlog to drain", || async {
        statuses(&*store)
            .await
            .iter()
            .all(|(s, _)| *s == DeliveryStatus::Succeeded)
            .then_some(())
    })
    .await;
    drop((a, b));
    let text = std::fs::read_to_string(&marks).unwrap();
    let mut keys: Vec<&str> = text.lines().collect();
    assert_eq!(keys.len(), EVENTS, "each delivery ran exactly once");
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), EVENTS, "no delivery ran twice");
    for (_, log) in statuses(&*store).await {
        assert_eq!(
            log,
            [AttemptOutcome::Succeeded],
            "exactly one attempt per delivery"
        );
    }
}

fn port_of(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let at = text.find("127.0.0.1:").unwrap() + "127.0.0.1:".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_on_sqlite() {
    kill_mid_handler_then_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_on_postgres() {
    kill_mid_handler_then_restart(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres() {
    two_processes_drain_a_backlog_without_doubles(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_validate_send_events_and_dlq() {
    let dir = Workdir::new();
    let bad = dir.config(
        "sqlite://x.db",
        free_port(),
        "sources: { a: { http: { path: /a } }, b: { http: { path: /a } } }\ntriggers: { t: { source: c, handler: nope, timeout: 1 sec } }\n",
    );
    let output = cli(&bad, &["validate"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("triggers.t.timeout: \"1 sec\" is not a duration"),
        "{stderr}"
    );

    let store_url = fresh_store(Backend::Sqlite).await;
    let config = dir.config(
        &store_url,
        free_port(),
        "sources: { jobs: { http: { path: /jobs } } }\ntriggers: { fail: { source: jobs, handler: { command: { program: \"false\" } } } }\n",
    );
    let output = cli(&config, &["validate"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = cli(&config, &["migrate"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = cli(
        &config,
        &["send", "jobs", "--data", r#"{"n": 1}"#, "--json"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(sent["triggers"], json!(["fail"]));
    let id = sent["id"].as_str().unwrap().to_owned();

    let output = cli(&config, &["events", "--json"]);
    let line: Value =
        serde_json::from_slice(output.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["id"], id.as_str());

    // Run the engine until the command handler's exit 1 dead-letters the delivery.
    let port = port_of(&config);
    let engine = spawn(&config);
    wait_ready(port).await;
    let store = open(&store_url).await;
    eventually(Duration::from_secs(30), "the dead letter", || async {
        statuses(&*store)
            .await
            .iter()
            .any(|(s, _)| *s == DeliveryStatus::Dead)
            .then_some(())
    })
    .await;
    drop(engine);

    let output = cli(&config, &["dlq", "list", "--json"]);
    let dead: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with status 1"),
        "{dead}"
    );
    let delivery = dead[0]["delivery_id"].to_string();
    let output = cli(&config, &["dlq", "replay", &delivery]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = cli(&config, &["event", &id, "--json"]);
    let detail: Value = serde_json::from_slice(&output.stdout).unwrap();
    let statuses: Vec<&str> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["replayed", "pending"]);
    let output = cli(&config, &["dlq", "replay", &delivery]);
    assert!(!output.status.success(), "replaying twice is an error");
}

/// A handler that kills its own worker process is a poison event: after
/// `max_attempts` abandoned attempts it is dead-lettered instead of crash-looping.
/// The handler waits a moment before the kill: a delivery claimed on append starts
/// as the event commits, and an instant kill could beat the 202 out of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_kills_its_worker_is_dead_lettered() {
    let dir = Workdir::new();
    let store_url = fresh_store(Backend::Sqlite).await;
    let port = free_port();
    let config = dir.config(
        &store_url,
        port,
        r#"
sources: { jobs: { http: { path: /jobs } } }
triggers:
  poison: { source: jobs, handler: { command: { program: sh, args: ["-c", "sleep 0.5; kill -9 $PPID"] } }, retry: { max_attempts: 2 } }
"#,
    );
    let store = open(&store_url).await;
    let mut engine = spawn(&config);
    wait_ready(port).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(post_json(addr, "/jobs", json!({}), &[]).await.status(), 202);
    let mut restarts = 0;
    let log = eventually(
        Duration::from_secs(60),
        "the poison event to be dead-lettered",
        || {
            if engine.0.try_wait().unwrap().is_some() {
                restarts += 1;
                engine = spawn(&config);
            }
            let store = store.clone();
            async move {
                let all = statuses(&*store).await;
                all.iter()
                    .find(|(s, _)| *s == DeliveryStatus::Dead)
                    .map(|(_, log)| log.clone())
            }
        },
    )
    .await;
    assert_eq!(
        log,
        [
            AttemptOutcome::Abandoned,
            AttemptOutcome::Abandoned,
            AttemptOutcome::Dead
        ]
    );
    assert_eq!(restarts, 2, "each attempt killed the engine once");
}
