//! The fault suite: the guarantees of docs/guarantees.md against the faults that
//! break them. Poison input, poison handler output, a process paused past its leases,
//! a database restarted and stopped under load, a full disk. Every scenario asserts
//! that nothing acknowledged was lost, and prints one tally row (`fault-row | ...`:
//! sent, acknowledged, in the log, delivered, duplicates), shown with `--nocapture`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard::{Context, Engine, Event, HandlerError, handler_fn};
use switchyard_store::{DeliveryStatus, EventQuery, NewDelivery, NewEvent, Store};
use uuid::Uuid;

use crate::both_backends;
use crate::crash::{Workdir, free_port, spawn, wait_ready};
use crate::support::{Backend, client, eventually, fresh_store, open, start};

const WAIT: Duration = Duration::from_secs(60);

/// One row of the fault table.
struct Tally {
    row: String,
    sent: usize,
    acknowledged: usize,
    logged: usize,
    delivered: usize,
    duplicates: usize,
}

impl Tally {
    fn print(&self) {
        eprintln!(
            "fault-row | {} | sent {} | acknowledged {} | in the log {} | delivered {} | duplicates {}",
            self.row, self.sent, self.acknowledged, self.logged, self.delivered, self.duplicates
        );
    }
}

/// Counts how often a Rust handler ran for each event.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<Uuid, usize>>>);

impl Runs {
    fn handler(&self) -> impl switchyard::Handler {
        let runs = self.clone();
        handler_fn(move |_: Context, event: Event| {
            let runs = runs.clone();
            async move {
                *runs
                    .0
                    .lock()
                    .unwrap()
                    .entry(event.switchyard_id)
                    .or_default() += 1;
                Ok(())
            }
        })
    }

    fn events(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn duplicates(&self) -> usize {
        self.0.lock().unwrap().values().map(|n| n - 1).sum()
    }
}

/// Every event of the log, with its deliveries' statuses and last errors by trigger.
type Log = Vec<(Uuid, HashMap<String, (DeliveryStatus, Option<String>)>)>;

/// Reads the whole [`Log`].
async fn log_of(store: &dyn Store) -> Log {
    let events = store
        .list_events(&EventQuery {
            limit: 0,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for summary in events {
        let detail = store.get_event(summary.id).await.unwrap().unwrap();
        let deliveries = detail
            .deliveries
            .into_iter()
            .map(|d| (d.trigger, (d.status, d.last_error)))
            .collect();
        out.push((summary.id, deliveries));
    }
    out
}

/// Waits until no delivery in the log is pending or running.
async fn settled(store: &dyn Store) -> Log {
    eventually(WAIT, "every delivery to finish", || async {
        let log = log_of(store).await;
        log.iter()
            .flat_map(|(_, deliveries)| deliveries.values())
            .all(|(status, _)| !matches!(status, DeliveryStatus::Pending | DeliveryStatus::Running))
            .then_some(log)
    })
    .await
}

/// Waits until every delivery has finished, checks that every `acknowledged` event
/// id is in the log, and returns the log.
async fn settled_with(store: &dyn Store, acknowledged: &[String]) -> Log {
    let log = settled(store).await;
    let logged: Vec<String> = log.iter().map(|(id, _)| id.to_string()).collect();
    for id in acknowledged {
        assert!(
            logged.contains(id),
            "acknowledged event {id} is not in the log"
        );
    }
    log
}

/// The event id of an ingest answer.
async fn event_id(response: reqwest::Response) -> String {
    let answer: Value = response.json().await.unwrap();
    answer["id"]
        .as_str()
        .expect("an answer with an id")
        .to_owned()
}

/// Runs SQL on a test store's database from outside the engine, as an operator (or a
/// fault) would.
async fn run_sql(backend: Backend, url: &str, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            sqlx::Executor::execute(&mut conn, sql).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            sqlx::Executor::execute(&mut conn, sql).await.unwrap();
        }
    }
}

/// Makes the database itself refuse a value that passes every check of Switchyard's
/// own: an event whose subject is `poison`, and an attempt whose error holds
/// `refuse-me`. This stands for any value a database may refuse, such as one beyond a
/// limit Switchyard does not know of.
async fn refuse_poison(backend: Backend, url: &str) {
    let sql = match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER poison_event BEFORE INSERT ON events WHEN NEW.subject = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'a poison event'); END;
             CREATE TRIGGER poison_result BEFORE UPDATE ON deliveries
                 WHEN NEW.last_error LIKE '%refuse-me%'
                 BEGIN SELECT RAISE(ABORT, 'a poison result'); END;"
        }
        Backend::Postgres => {
            "CREATE FUNCTION switchyard.poison_event() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.subject = 'poison' THEN
                     RAISE EXCEPTION 'a poison event' USING ERRCODE = '22000';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE FUNCTION switchyard.poison_result() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.last_error LIKE '%refuse-me%' THEN
                     RAISE EXCEPTION 'a poison result' USING ERRCODE = '22000';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER poison BEFORE INSERT ON switchyard.events
                 FOR EACH ROW EXECUTE FUNCTION switchyard.poison_event();
             CREATE TRIGGER poison BEFORE UPDATE ON switchyard.deliveries
                 FOR EACH ROW EXECUTE FUNCTION switchyard.poison_result();"
        }
    };
    run_sql(backend, url, sql).await;
}

/// An engine whose one trigger counts the events of the HTTP source `/hooks` in `runs`.
async fn counting_engine(store_url: &str, runs: &Runs) -> switchyard::RunningEngine {
    start(
        Engine::from_cli().handler("count", runs.handler()),
        "sources: { hooks: { http: { path: /hooks } } }\ntriggers: { count: { source: hooks, handler: count } }\n",
        store_url,
    )
    .await
}

/// A request a client might send, and the status it must get.
struct Probe {
    what: &'static str,
    content_type: &'static str,
    path: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    expect: u16,
}

fn poison_probes() -> Vec<Probe> {
    let probe = |what, content_type, path, body: &[u8], expect| Probe {
        what,
        content_type,
        path,
        body: body.to_vec(),
        headers: Vec::new(),
        expect,
    };
    let cloudevent = "application/cloudevents+json";
    vec![
        probe("JSON with \\u0000 in a value", "application/json", "/hooks", br#"{"a":"x\u0000y"}"#, 400),
        probe("JSON with \\u0000 in a key", "application/json", "/hooks", br#"{"k\u0000":1}"#, 400),
        probe("JSON that is not UTF-8", "application/json", "/hooks", b"{\"a\":\"\xff\"}", 400),
        probe("a NUL byte in a text body", "text/plain", "/hooks", b"a\0b", 202),
        probe("%00 in the query string", "application/json", "/hooks?a=%00", b"{}", 400),
        probe(
            "a CloudEvent attribute holding NUL",
            cloudevent,
            "/hooks",
            br#"{"specversion":"1.0","id":"nul-1","source":"/s","type":"t","subject":"a\u0000"}"#,
            400,
        ),
        probe(
            "a CloudEvent with invalid data_base64",
            cloudevent,
            "/hooks",
            br#"{"specversion":"1.0","id":"b64-1","source":"/s","type":"t","data_base64":"%%%"}"#,
            400,
        ),
        probe(
            "a CloudEvent with both data and data_base64",
            cloudevent,
            "/hooks",
            br#"{"specversion":"1.0","id":"b64-2","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#,
            400,
        ),
        probe(
            "a value the database refuses",
            cloudevent,
            "/hooks",
            br#"{"specversion":"1.0","id":"db-1","source":"/s","type":"t","subject":"poison"}"#,
            400,
        ),
        Probe {
            headers: vec![("idempotency-key", "k".repeat(10_000))],
            ..probe("an idempotency key longer than an index allows", "application/json", "/hooks", b"{}", 202)
        },
    ]
}

async fn send(addr: SocketAddr, probe: &Probe) -> reqwest::Response {
    let mut request = client()
        .post(format!("http://{addr}{}", probe.path))
        .header("content-type", probe.content_type)
        .body(probe.body.clone());
    for (name, value) in &probe.headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("request sent")
}

/// Poison input of every kind, sent again and again beside valid traffic: each poison
/// request is stored faithfully or refused with a 400 that says why, no valid request
/// fails (no 503), and everything acknowledged is in the log and delivered once.
async fn poison_input_fails_alone(backend: Backend) {
    const CLIENTS: usize = 8;
    const VALID_PER_CLIENT: usize = 40;
    let store_url = fresh_store(backend).await;
    let runs = Runs::default();
    let engine = counting_engine(&store_url, &runs).await;
    refuse_poison(backend, &store_url).await;
    let addr = engine.local_addr();

    let valid = (0..CLIENTS).map(|client| {
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..VALID_PER_CLIENT {
                let body = json!({ "client": client, "n": n, "pad": "x".repeat(200) });
                let response = client_post(addr, &body).await;
                let status = response.status().as_u16();
                let answer: Value = response.json().await.unwrap();
                assert_eq!(
                    status, 202,
                    "a valid request failed beside poison: {answer}"
                );
                acknowledged.push(answer["id"].as_str().unwrap().to_owned());
            }
            acknowledged
        })
    });
    let valid: Vec<_> = valid.collect();
    let probes = poison_probes();
    let mut poison_sent = 0;
    let mut poison_stored = Vec::new();
    for round in 0..5 {
        for probe in &probes {
            let response = send(addr, probe).await;
            poison_sent += 1;
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            let expect = if round > 0
                && probe
                    .headers
                    .iter()
                    .any(|(name, _)| *name == "idempotency-key")
            {
                200 // the same key again: a duplicate
            } else {
                probe.expect
            };
            assert_eq!(status, expect, "{}: {answer}", probe.what);
            match status {
                400 => assert!(
                    answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{}: a 400 says why",
                    probe.what
                ),
                202 => poison_stored.push(answer["id"].as_str().unwrap().to_owned()),
                _ => {}
            }
        }
    }
    let mut acknowledged = Vec::new();
    for task in valid {
        acknowledged.extend(task.await.unwrap());
    }
    acknowledged.extend(poison_stored.iter().cloned());

    let store = engine.store().clone();
    let log = settled_with(&*store, &acknowledged).await;
    assert_eq!(
        log.len(),
        acknowledged.len(),
        "only acknowledged events are in the log"
    );
    eventually(WAIT, "every logged event to be delivered", || async {
        (runs.events() == log.len()).then_some(())
    })
    .await;

    // The NUL text body was stored byte for byte.
    let text = log
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| poison_stored.contains(&id.to_string()));
    let mut found_nul_body = false;
    for id in text {
        let detail = store.get_event(id).await.unwrap().unwrap();
        if let Some(body) = detail
            .event
            .data
            .as_ref()
            .and_then(|d| d["body_base64"].as_str())
        {
            assert_eq!(body, "YQBi", "a\\0b in base64");
            found_nul_body = true;
        }
    }
    assert!(found_nul_body, "the NUL text body is in the log");

    Tally {
        row: format!("poison input beside valid traffic ({backend:?})"),
        sent: CLIENTS * VALID_PER_CLIENT + poison_sent,
        acknowledged: acknowledged.len(),
        logged: log.len(),
        delivered: runs.events(),
        duplicates: runs.duplicates(),
    }
    .print();
    engine.shutdown().await;
}

async fn client_post(addr: SocketAddr, body: &Value) -> reqwest::Response {
    client()
        .post(format!("http://{addr}/hooks"))
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// Handlers whose output no store could hold as it is: NUL bytes, invalid UTF-8, 50 MB
/// on each stream, a megabyte-long error, and an error the database itself refuses.
/// Each ends as a dead letter with a readable error, and a healthy trigger on the same
/// events is never held up.
async fn poison_output_never_stalls_the_others(backend: Backend) {
    const EVENTS: usize = 10;
    let store_url = fresh_store(backend).await;
    let runs = Runs::default();
    let long_error = handler_fn(|_: Context, _: Event| async {
        Err(HandlerError::fatal(format!("nul\0{}", "e".repeat(1 << 20))))
    });
    let refused_error =
        handler_fn(|_: Context, _: Event| async { Err(HandlerError::fatal("refuse-me")) });
    let engine = start(
        Engine::from_cli()
            .handler("count", runs.handler())
            .handler("long_error", long_error)
            .handler("refused_error", refused_error),
        r#"
sources: { jobs: { http: { path: /jobs } } }
triggers:
  nul_and_binary: { source: jobs, handler: { command: { program: sh, args: ["-c", "printf 'a\\000b\\377\\376' >&2; exit 3"] } } }
  flood: { source: jobs, handler: { command: { program: sh, args: ["-c", "head -c 50000000 /dev/zero; head -c 50000000 /dev/zero >&2; exit 3"] } } }
  long_error: { source: jobs, handler: long_error }
  refused_error: { source: jobs, handler: refused_error }
  healthy: { source: jobs, handler: count }
"#,
        &store_url,
    )
    .await;
    refuse_poison(backend, &store_url).await;
    let addr = engine.local_addr();
    let mut acknowledged = 0;
    for n in 0..EVENTS {
        let response = client()
            .post(format!("http://{addr}/jobs"))
            .json(&json!({ "n": n }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        acknowledged += 1;
    }
    let store = engine.store().clone();
    let log = settled(&*store).await;
    assert_eq!(log.len(), EVENTS);
    for (id, deliveries) in &log {
        let error = |trigger: &str| {
            let (status, error) = &deliveries[trigger];
            assert_eq!(*status, DeliveryStatus::Dead, "{trigger} of {id}");
            error.clone().unwrap()
        };
        assert_eq!(deliveries["healthy"].0, DeliveryStatus::Succeeded, "{id}");
        let nul = error("nul_and_binary");
        assert!(nul.contains("a\u{FFFD}b"), "{nul}");
        let flood = error("flood");
        assert!(flood.chars().count() < 4096, "the flood's error is bounded");
        assert!(
            flood.ends_with('\u{FFFD}'),
            "the NUL bytes it printed are marked"
        );
        let long = error("long_error");
        assert!(long.starts_with("fatal: nul\u{FFFD}eee"), "{}", &long[..20]);
        assert!(
            long.ends_with("more bytes not kept)"),
            "{}",
            &long[long.len() - 40..]
        );
        let refused = error("refused_error");
        assert!(
            refused.starts_with("the attempt's error could not be stored"),
            "{refused}"
        );
    }
    assert_eq!(runs.events(), EVENTS);
    Tally {
        row: format!("poison handler output ({backend:?})"),
        sent: EVENTS,
        acknowledged,
        logged: log.len(),
        delivered: runs.events(),
        duplicates: runs.duplicates(),
    }
    .print();
    engine.shutdown().await;
}

both_backends!(
    poison_input_fails_alone,
    poison_output_never_stalls_the_others
);

/// Whether `pid` is gone or a zombie.
fn is_dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// A command that starts a background process and then times out, twice: each time
/// the whole process group goes, so no retry ever runs beside a leftover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_forks_and_times_out_leaves_nothing_running() {
    let dir = Workdir::new();
    let pids = dir.0.join("pids");
    let store_url = fresh_store(Backend::Sqlite).await;
    let engine = start(
        Engine::from_cli(),
        &format!(
            r#"
sources: {{ jobs: {{ http: {{ path: /jobs }} }} }}
triggers:
  forks: {{ source: jobs, handler: {{ command: {{ program: sh, args: ["-c", "sleep 600 & echo $! >> {}; sleep 600"] }} }}, timeout: 1s, retry: {{ max_attempts: 2, initial: 100ms }} }}
"#,
            pids.display()
        ),
        &store_url,
    )
    .await;
    let response = client()
        .post(format!("http://{}/jobs", engine.local_addr()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let log = settled(&**engine.store()).await;
    assert_eq!(log[0].1["forks"].0, DeliveryStatus::Dead);
    let started = std::fs::read_to_string(&pids).unwrap();
    let started: Vec<&str> = started.lines().collect();
    assert_eq!(started.len(), 2, "one background process per attempt");
    for pid in started {
        eventually(
            Duration::from_secs(5),
            "the background process to die",
            || async { is_dead(pid).then_some(()) },
        )
        .await;
    }
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------
// A process paused past its leases

/// `kill -SIGNAL pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// One handler run, from the shared log the handler appends to.
#[derive(Debug, Clone)]
struct Run {
    key: String,
    process: String,
    start: u128,
    end: Option<u128>,
}

fn runs_in(log: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs: Vec<Run> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [what, key, process, at] = fields[..] else {
            panic!("a bad log line: {line:?}");
        };
        let at: u128 = at.parse().unwrap();
        match what {
            "start" => runs.push(Run {
                key: key.to_owned(),
                process: process.to_owned(),
                start: at,
                end: None,
            }),
            "end" => {
                let run = runs
                    .iter_mut()
                    .rev()
                    .find(|run| run.key == key && run.process == process && run.end.is_none())
                    .expect("an end after its start");
                run.end = Some(at);
            }
            other => panic!("a bad log line: {other}"),
        }
    }
    runs
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A process holds a backlog (one delivery running, the rest prefetched), is paused
/// with SIGSTOP past its leases while a second process takes everything over, and is
/// resumed with SIGCONT once the second has finished. The resumed process must start
/// none of the deliveries it held: their leases were reclaimed long ago. With
/// `ordering`, each key's deliveries must also run one at a time and in order.
async fn paused_process_starts_nothing_it_no_longer_owns(ordered: bool) {
    const EVENTS: usize = 24;
    let dir = Workdir::new();
    let log = dir.0.join("runs.log");
    let store_url = fresh_store(Backend::Postgres).await;
    let store = open(&store_url).await;
    // event id -> (ordering key, position within the key)
    let mut positions: HashMap<Uuid, (String, usize)> = HashMap::new();
    let backlog: Vec<NewEvent> = (0..EVENTS)
        .map(|n| {
            let key = format!("k{}", n % 3);
            let event =
                Event::new("jobs", "/jobs", "http.request").with_json(json!({ "k": key, "n": n }));
            positions.insert(event.switchyard_id, (key.clone(), n / 3));
            NewEvent {
                event,
                deliveries: vec![NewDelivery {
                    trigger: "work".into(),
                    ordering_key: ordered.then_some(key),
                    claim: false,
                }],
            }
        })
        .collect();
    store.append(&backlog).await.unwrap();
    let handler = format!(
        r#"{{ command: {{ program: sh, args: ["-c", "echo start $SWITCHYARD_EVENT_ID $PPID $(date +%s%N) >> {log}; sleep 0.3; echo end $SWITCHYARD_EVENT_ID $PPID $(date +%s%N) >> {log}"] }} }}"#,
        log = log.display()
    );
    let ordering = if ordered {
        ", ordering: { key: data.k }"
    } else {
        ""
    };
    let trigger = |concurrency: u32| {
        format!(
            "sources: {{ jobs: {{ http: {{ path: /jobs }} }} }}\ntriggers:\n  work: {{ source: jobs, handler: {handler}, concurrency: {concurrency}{ordering} }}\n"
        )
    };
    let port_a = free_port();
    let a = spawn(&dir.config_named("a.yaml", &store_url, port_a, &trigger(1)));
    wait_ready(port_a).await;
    eventually(WAIT, "the first process to start a handler", || async {
        (!runs_in(&log).is_empty()).then_some(())
    })
    .await;
    signal(a.0.id(), "STOP");
    let process_a = a.0.id().to_string();

    let port_b = free_port();
    let b = spawn(&dir.config_named("b.yaml", &store_url, port_b, &trigger(8)));
    let all_done = || async {
        let log = log_of(&*store).await;
        log.iter()
            .flat_map(|(_, deliveries)| deliveries.values())
            .all(|(status, _)| *status == DeliveryStatus::Succeeded)
            .then_some(())
    };
    eventually(
        WAIT,
        "the second process to take every delivery over",
        all_done,
    )
    .await;
    let resumed_at = now_nanos();
    signal(a.0.id(), "CONT");
    // An observation window, not a timing assertion: long enough (1.5 leases) for the
    // resumed process to start whatever it still held, had it kept it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop((a, b));

    let runs = runs_in(&log);
    let late: Vec<&Run> = runs
        .iter()
        .filter(|run| run.process == process_a && run.start > resumed_at)
        .collect();
    assert!(
        late.is_empty(),
        "the resumed process started deliveries it no longer owned: {late:?}"
    );
    let mut per_event: HashMap<&str, Vec<&Run>> = HashMap::new();
    for run in &runs {
        per_event.entry(run.key.as_str()).or_default().push(run);
    }
    assert_eq!(per_event.len(), EVENTS, "every event ran");
    let twice: Vec<_> = per_event.values().filter(|runs| runs.len() > 1).collect();
    assert!(
        twice.len() <= 1 && twice.iter().all(|runs| runs.len() == 2),
        "only the delivery running at the pause may run again: {twice:?}"
    );
    if ordered {
        let mut by_key: HashMap<&str, Vec<(&Run, usize)>> = HashMap::new();
        for run in &runs {
            let id: Uuid = run.key.parse().unwrap();
            let (key, position) = &positions[&id];
            by_key
                .entry(key.as_str())
                .or_default()
                .push((run, *position));
        }
        for (key, mut runs) in by_key {
            runs.sort_by_key(|(run, _)| run.start);
            for pair in runs.windows(2) {
                let ((earlier, p), (later, q)) = (pair[0], pair[1]);
                assert!(
                    p <= q,
                    "key {key}: position {q} ran after {p}, out of order"
                );
                assert!(
                    earlier.end.is_some_and(|end| end <= later.start),
                    "key {key}: two deliveries ran at once: {earlier:?} and {later:?}"
                );
            }
        }
    }
    Tally {
        row: format!(
            "SIGSTOP past the lease, then SIGCONT{}",
            if ordered { ", with ordering" } else { "" }
        ),
        sent: EVENTS,
        acknowledged: EVENTS,
        logged: log_of(&*store).await.len(),
        delivered: per_event.len(),
        duplicates: runs.len() - per_event.len(),
    }
    .print();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_process_starts_nothing_it_no_longer_owns() {
    paused_process_starts_nothing_it_no_longer_owns(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_process_keeps_per_key_order() {
    paused_process_starts_nothing_it_no_longer_owns(true).await;
}

// ---------------------------------------------------------------------------------
// A database restarted and stopped under load

/// A Postgres cluster of the test's own, on a free port, so that it can be stopped and
/// restarted without touching the shared server. Removed when dropped.
struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivateCluster {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Postgres server binaries under /usr/lib/postgresql (scripts/test.sh installs them)")
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = std::env::temp_dir().join(format!("sy_pg_{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres").arg(&dir);
            succeed(chown);
        }
        let cluster = Self {
            dir,
            port: free_port(),
            bin,
        };
        let data = cluster.data();
        succeed(cluster.pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-N"],
        ));
        cluster.up();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A Postgres program with `args`, run as the `postgres` user when this process
    /// is root (Postgres refuses to run as root), else as this user.
    fn pg(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(args);
        command
    }

    fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        let data = self.data();
        succeed(self.pg(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        ));
    }

    fn down(&self) {
        let data = self.data();
        succeed(self.pg("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        // It may be stopped already; the directory goes either way.
        let _ = self
            .pg("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Runs `command` and fails the test with its stderr unless it succeeds.
fn succeed(mut command: Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Posts with idempotency keys from several clients while the database is restarted,
/// then stopped for a while and started again. Every 202 must be in the log and be
/// delivered; every refusal must be a 503 with `Retry-After`; and the engine must
/// accept again once the database is back, without a restart of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_and_stopped_database_loses_nothing_acknowledged() {
    const CLIENTS: usize = 6;
    let cluster = PrivateCluster::start();
    let dir = Workdir::new();
    let delivered = dir.0.join("delivered");
    let port = free_port();
    let config = dir.config(
        &cluster.url(),
        port,
        &format!(
            "sources: {{ jobs: {{ http: {{ path: /jobs }} }} }}\ntriggers:\n  mark: {{ source: jobs, handler: {{ command: {{ program: sh, args: [\"-c\", \"echo $SWITCHYARD_EVENT_ID >> {}\"] }} }}, retry: {{ max_attempts: 50, initial: 200ms, max: 1s }} }}\n",
            delivered.display()
        ),
    );
    let _engine = spawn(&config);
    wait_ready(port).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut sent, mut acknowledged, mut unavailable) = (0, Vec::new(), 0);
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sent += 1;
                    let response = http
                        .post(format!("http://{addr}/jobs"))
                        .header("idempotency-key", format!("{client}-{sent}"))
                        .json(&json!({ "client": client, "n": sent }))
                        .send()
                        .await
                        .expect("the engine answers while the database is down");
                    match response.status().as_u16() {
                        202 => {
                            let answer: Value = response.json().await.unwrap();
                            acknowledged.push(answer["id"].as_str().unwrap().to_owned());
                        }
                        503 => {
                            assert!(
                                response.headers().contains_key("retry-after"),
                                "a 503 without Retry-After"
                            );
                            unavailable += 1;
                        }
                        other => panic!("unexpected status {other} while the database restarts"),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (sent, acknowledged, unavailable)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.down();
    cluster.up();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.down();
    let ready = tokio::time::timeout(
        Duration::from_secs(4),
        client().get(format!("http://{addr}/readyz")).send(),
    )
    .await
    .expect("/readyz answers within its bound while the database is down")
    .unwrap();
    assert_eq!(ready.status(), 503, "not ready while the database is down");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.up();
    wait_ready(port).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let (mut sent, mut acknowledged, mut unavailable) = (0, Vec::new(), 0);
    for task in clients {
        let (s, a, u) = task.await.unwrap();
        sent += s;
        acknowledged.extend(a);
        unavailable += u;
    }
    assert!(unavailable > 0, "the outage was seen as 503s");
    let response = client()
        .post(format!("http://{addr}/jobs"))
        .json(&json!({ "after": "recovery" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        202,
        "the engine accepts again without a restart"
    );
    sent += 1;
    acknowledged.push(event_id(response).await);

    let store = open(&cluster.url()).await;
    let log = settled_with(&*store, &acknowledged).await;
    for (id, deliveries) in &log {
        assert_eq!(deliveries["mark"].0, DeliveryStatus::Succeeded, "{id}");
    }
    let marks = std::fs::read_to_string(&delivered).unwrap();
    let marks: Vec<&str> = marks.lines().collect();
    let mut distinct = marks.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        log.len(),
        "every logged event was delivered"
    );
    Tally {
        row: format!(
            "Postgres restarted, then stopped 3 s, under load ({unavailable} answered 503)"
        ),
        sent,
        acknowledged: acknowledged.len(),
        logged: log.len(),
        delivered: distinct.len(),
        duplicates: marks.len() - distinct.len(),
    }
    .print();
}

// ---------------------------------------------------------------------------------
// A full disk

/// A small tmpfs of the test's own; unmounted and removed when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("sy_disk_{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mounting a tmpfs needs root (scripts/test.sh runs as root in CI): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(dir)
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // A partly written block may still fit.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Best effort: the mount point is in the temp directory. Lazily, since a failed
        // test's engine may still hold the database open.
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SQLite on a disk that fills up: ingest answers 503 with `Retry-After` (and
/// `/readyz` 503) while it is full, and once space is freed it heals by itself: no
/// restart, and every acknowledged event is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_heals_once_a_full_disk_has_room_again() {
    let disk = SmallDisk::mount(8);
    let store_url = format!("sqlite://{}", disk.0.join("switchyard.db").display());
    let runs = Runs::default();
    let engine = counting_engine(&store_url, &runs).await;
    let addr = engine.local_addr();
    let post = |n: usize| async move {
        let body = json!({ "n": n, "pad": "x".repeat(100_000) });
        client_post(addr, &body).await
    };
    let mut acknowledged = Vec::new();
    let mut sent = 0;
    for n in 0..3 {
        let response = post(n).await;
        sent += 1;
        assert_eq!(response.status(), 202);
        acknowledged.push(event_id(response).await);
    }

    let filler = disk.fill();
    let mut refused = 0;
    for n in 3..40 {
        let response = post(n).await;
        sent += 1;
        match response.status().as_u16() {
            202 => acknowledged.push(event_id(response).await),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("unexpected status {other} on a full disk"),
        }
    }
    assert!(refused > 0, "a full disk refuses some writes");
    let ready = client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while the disk is full");

    std::fs::remove_file(filler).unwrap();
    eventually(
        Duration::from_secs(20),
        "the engine to be ready again",
        || async {
            let ready = client()
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .ok()?;
            ready.status().is_success().then_some(())
        },
    )
    .await;
    for n in 40..45 {
        let response = post(n).await;
        sent += 1;
        assert_eq!(response.status(), 202, "ingest heals without a restart");
        acknowledged.push(event_id(response).await);
    }
    let store = engine.store().clone();
    let log = settled_with(&*store, &acknowledged).await;
    eventually(WAIT, "every logged event to be delivered", || async {
        (runs.events() == log.len()).then_some(())
    })
    .await;
    Tally {
        row: format!("SQLite disk full, then space freed ({refused} answered 503)"),
        sent,
        acknowledged: acknowledged.len(),
        logged: log.len(),
        delivered: runs.events(),
        duplicates: runs.duplicates(),
    }
    .print();
    engine.shutdown().await;
}
