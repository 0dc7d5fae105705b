//! The inspection commands end to end, through the real binary: what they refuse and
//! what they print.

use std::process::Output;

use sqlx::Connection;

use crate::crash::{Workdir, cli, free_port};
use crate::support::{Backend, fresh_store};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a command that must succeed and returns its stdout.
fn ok(config: &std::path::Path, args: &[&str]) -> String {
    let output = cli(config, args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Runs a command that must fail and returns its stderr.
fn fails(config: &std::path::Path, args: &[&str]) -> String {
    let output = cli(config, args);
    assert!(
        !output.status.success(),
        "{args:?} succeeded: {}",
        stdout(&output)
    );
    stderr(&output)
}

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

const HTTP_SOURCE: &str = "sources: { jobs: { http: { path: /jobs } } }\ntriggers: { t: { source: jobs, handler: { command: { program: \"true\" } } } }\n";

const READ_ONLY: [&[&str]; 9] = [
    &["events"],
    &["event", "0190a0f0-0000-7000-8000-000000000001"],
    &["dlq", "list"],
    &["dlq", "show", "1"],
    &["schedules"],
    &["sources"],
    &["rejected"],
    &["replay", "--since", "2026-01-01T00:00:00Z"],
    &["send", "jobs"],
];

#[tokio::test]
async fn commands_other_than_migrate_never_create_a_sqlite_store() {
    let dir = Workdir::new();
    let path = dir.0.join("typo.db");
    let config = dir.config(
        &format!("sqlite://{}", path.display()),
        free_port(),
        HTTP_SOURCE,
    );
    for args in READ_ONLY {
        let error = fails(&config, args);
        assert!(
            error.contains(&format!(
                "the SQLite store {} does not exist",
                path.display()
            )),
            "{args:?}: {error}"
        );
        assert!(!path.exists(), "{args:?} created the store");
    }

    let migrated = ok(&config, &["migrate"]);
    assert!(
        migrated.starts_with("applied migration 1 (event log)\napplied migration 2 (schedules)\n"),
        "{migrated}"
    );
    assert!(migrated.contains("\nschema migrated ("), "{migrated}");
    assert_eq!(
        ok(&config, &["migrate"]),
        format!("schema up to date (sqlite://{})\n", path.display())
    );
    assert!(ok(&config, &["events"]).contains("no events"));
}

/// A store whose latest migration is not recorded, as one migrated by an older build.
async fn set_latest_migration_aside(url: &str) {
    let table = if url.starts_with("sqlite:") {
        "_sqlx_migrations"
    } else {
        "switchyard._sqlx_migrations"
    };
    let statement = format!(
        "UPDATE {table} SET version = -version WHERE version = (SELECT max(version) FROM {table})"
    );
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn an_old_schema_asks_for_migrate_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let store = fresh_store(backend).await;
        if let Some(path) = store.strip_prefix("sqlite://") {
            // An empty file is an empty SQLite database.
            std::fs::File::create(path).unwrap();
        }
        let dir = Workdir::new();
        let config = dir.config(&store, free_port(), HTTP_SOURCE);
        let error = fails(&config, &["events"]);
        assert!(
            error.contains("the store has no Switchyard schema: run `switchyard migrate`"),
            "{backend:?}: {error}"
        );
        ok(&config, &["migrate"]);
        let again = std::process::Command::new(BIN)
            .args(["migrate", "--config"])
            .arg(&config)
            .env("SWITCHYARD_LOG", "info")
            .output()
            .unwrap();
        assert!(again.status.success(), "{}", stderr(&again));
        assert!(
            !stderr(&again).contains("already exists"),
            "{backend:?}: a notice reached the log: {}",
            stderr(&again)
        );
        set_latest_migration_aside(&store).await;
        for args in READ_ONLY {
            let error = fails(&config, args);
            assert!(
                error.contains("the store's schema is older than this switchyard")
                    && error.contains("run `switchyard migrate`"),
                "{backend:?} {args:?}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_postgres_names_the_cause_without_the_password() {
    let dir = Workdir::new();
    let config = dir.config(
        "postgres://postgres:canary-pw-0c1d@127.0.0.1:1/none",
        free_port(),
        HTTP_SOURCE,
    );
    let error = fails(&config, &["events"]);
    assert!(
        error.contains("cannot reach the store at postgres://postgres:")
            && error.contains("onnection refused"),
        "{error}"
    );
    assert!(!error.contains("canary-pw-0c1d"), "{error}");
}

const NAMED: &str = r#"
sources:
  jobs: { http: { path: /jobs } }
  tick: { cron: { schedule: "0 0 1 1 *" } }
triggers:
  work: { source: jobs, handler: log }
  paused: { source: jobs, handler: log, enabled: false }
  nightly: { source: tick, handler: log }
"#;

#[tokio::test]
async fn unknown_names_and_inverted_windows_are_errors() {
    let store = fresh_store(Backend::Sqlite).await;
    let dir = Workdir::new();
    let config = dir.config(&store, free_port(), NAMED);
    ok(&config, &["migrate"]);
    let sent: serde_json::Value =
        serde_json::from_str(&ok(&config, &["send", "jobs", "--json"])).unwrap();
    let id = sent["id"].as_str().unwrap().to_owned();

    let cases: [(&[&str], &str); 10] = [
        (
            &["events", "--source", "job"],
            "unknown source \"job\" (defined: jobs, tick)",
        ),
        (
            &["events", "--trigger", "wrk"],
            "unknown trigger \"wrk\" (defined: nightly, paused, work)",
        ),
        (
            &["events", "--source", "tick", "--type", "http.request"],
            "source \"tick\" makes no events of type \"http.request\" (its types: cron.tick)",
        ),
        (
            &["dlq", "replay", "--trigger", "nope"],
            "unknown trigger \"nope\"",
        ),
        (
            &["dlq", "replay", "--trigger", "paused"],
            "trigger \"paused\" is disabled",
        ),
        (
            &["replay", &id, "--trigger", "nightly"],
            "trigger \"nightly\" is of source \"tick\", not of \"jobs\"",
        ),
        (
            &["replay", &id, "--trigger", "paused"],
            "trigger \"paused\" is disabled",
        ),
        (
            &["replay", &id, "--trigger", "nope"],
            "unknown trigger \"nope\"",
        ),
        (
            &[
                "replay",
                "--since",
                "1h",
                "--source",
                "jobs",
                "--trigger",
                "nightly",
            ],
            "trigger \"nightly\" is of source \"tick\", not of \"jobs\"",
        ),
        (
            &[
                "replay",
                "--since",
                "2026-05-02T00:00:00Z",
                "--until",
                "2026-05-01T00:00:00Z",
            ],
            "--until (2026-05-01T00:00:00+00:00) is not after --since (2026-05-02T00:00:00+00:00)",
        ),
    ];
    for (args, expected) in cases {
        let error = fails(&config, args);
        assert!(error.contains(expected), "{args:?}: {error}");
    }
    // An HTTP source takes CloudEvents of any type, so any type may be asked for.
    assert!(ok(&config, &["events", "--type", "com.example.anything"]).contains("no events"));
    assert!(ok(&config, &["replay", &id, "--trigger", "work"]).contains("new deliveries"));
}

#[tokio::test]
async fn validate_lists_every_error_and_a_missing_variable_once() {
    let dir = Workdir::new();
    let rest = "sources: { jobs: { http: { path: /jobs, body_limit: \"${SY_TEST_LIMIT}\" } } }
triggers:
  t:
    source: jobs
    handler: log
    timeout: 1 sec
    retry: { initial: 2 parsecs }
";
    let config = dir.config(
        "${SY_TEST_UNSET_STORE:?set the store URL}",
        free_port(),
        rest,
    );
    let error = fails(&config, &["validate"]);
    assert!(error.contains("has 4 problem(s):"), "{error}");
    assert_eq!(
        error.matches("SY_TEST_UNSET_STORE").count(),
        1,
        "the store's variable is reported once: {error}"
    );
    for expected in [
        "store: environment variable SY_TEST_UNSET_STORE is not set: set the store URL",
        "sources.jobs.http.body_limit: environment variable SY_TEST_LIMIT is not set",
        "triggers.t.retry.initial: \"2 parsecs\" is not a duration",
        "triggers.t.timeout: \"1 sec\" is not a duration",
    ] {
        assert!(error.contains(expected), "{expected}: {error}");
    }

    let error = fails(&config, &["validate", "--no-environment"]);
    assert!(error.contains("has 2 problem(s):"), "{error}");
    assert!(!error.contains("placeholder"), "{error}");

    let placeholders = dir.config_named(
        "placeholders.yaml",
        "${SY_TEST_UNSET_STORE}",
        free_port(),
        "sources: { jobs: { http: { path: /jobs, body_limit: \"${SY_TEST_LIMIT}\" } } }
triggers: { t: { source: jobs, handler: log, timeout: \"${SY_TEST_TIMEOUT}\" } }
",
    );
    assert!(ok(&placeholders, &["validate", "--no-environment"]).contains("is valid"));
}

/// Runs a command with `COLUMNS` set and returns its stdout.
fn at_width(config: &std::path::Path, args: &[&str], columns: &str) -> String {
    let output = std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("COLUMNS", columns)
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

const LONG_ERROR: &str = "webhook https://hooks.example.com/deploy answered status 503 Service Unavailable: upstream connect error or disconnect/reset before headers\nsecond line";

#[tokio::test]
async fn tables_fit_the_terminal_and_json_stays_whole() {
    use switchyard_store::{AttemptOutcome, Finished, NewDelivery, NewEvent};

    let url = fresh_store(Backend::Sqlite).await;
    let dir = Workdir::new();
    let config = dir.config(&url, free_port(), NAMED);
    ok(&config, &["migrate"]);
    let store = crate::support::open(&url).await;
    let event = switchyard_core::Event::new("jobs", "/jobs", "http.request");
    let id = event.switchyard_id.to_string();
    let delivery = NewDelivery {
        trigger: "work".to_owned(),
        ordering_key: None,
        claim: false,
    };
    store
        .append(&[NewEvent {
            event,
            deliveries: vec![delivery],
        }])
        .await
        .unwrap();
    let claimed = store
        .claim(&["work".to_owned()], 1, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let finished = Finished {
        lease: claimed[0].lease,
        attempt: claimed[0].attempt,
        started_at: claimed[0].claimed_at,
        duration_ms: 12,
        outcome: AttemptOutcome::Dead,
        retry_at: None,
        error: Some(LONG_ERROR.to_owned()),
        output: None,
    };
    assert_eq!(store.finish(&[finished]).await.unwrap(), [true]);

    let narrow = at_width(&config, &["dlq", "list"], "60");
    assert!(
        narrow.lines().all(|line| line.chars().count() <= 60),
        "{narrow}"
    );
    assert!(narrow.contains("work"), "{narrow}");
    assert!(
        narrow.contains("webhook https://hooks.example.com/deploy"),
        "the error keeps a useful prefix: {narrow}"
    );
    assert!(
        !narrow.contains(&id),
        "the event id is dropped first: {narrow}"
    );
    assert!(!narrow.contains("second line"), "{narrow}");

    let wide = at_width(&config, &["dlq", "list"], "200");
    assert!(
        wide.lines().all(|line| line.chars().count() <= 200),
        "{wide}"
    );
    assert!(wide.contains(&id), "{wide}");
    assert!(wide.contains("status 503 Service Unavailable"), "{wide}");
    assert_eq!(
        wide.lines().count(),
        3,
        "a header, a rule and one row: {wide}"
    );

    let events = at_width(&config, &["events"], "60");
    assert!(
        events.lines().all(|line| line.chars().count() <= 60),
        "{events}"
    );
    assert!(events.contains(&id), "the id is kept whole: {events}");

    let json = at_width(&config, &["dlq", "list", "--json"], "60");
    let dead: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(dead[0]["last_error"], LONG_ERROR, "--json is not cut");
}

#[tokio::test]
async fn send_to_a_cron_source_makes_a_tick() {
    let url = fresh_store(Backend::Sqlite).await;
    let dir = Workdir::new();
    let config = dir.config(&url, free_port(), NAMED);
    ok(&config, &["migrate"]);
    let sent: serde_json::Value = serde_json::from_str(&ok(
        &config,
        &["send", "tick", "--data", r#"{"note": "by hand"}"#, "--json"],
    ))
    .unwrap();
    assert_eq!(sent["triggers"], serde_json::json!(["nightly"]));
    let id = sent["id"].as_str().unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&config, &["event", id, "--json"])).unwrap();
    let event = &shown["event"];
    assert_eq!(event["type"], "cron.tick", "{shown}");
    assert_eq!(event["source"], "cron://tick", "{shown}");
    assert_eq!(event["subject"], "tick", "{shown}");
    assert_eq!(event["data"]["schedule"], "0 0 1 1 *", "{shown}");
    assert_eq!(event["data"]["timezone"], "UTC", "{shown}");
    assert_eq!(event["data"]["payload"]["note"], "by hand", "{shown}");
    assert!(event["data"]["scheduled_time"].is_string(), "{shown}");
    assert!(event["data"]["fired_at"].is_string(), "{shown}");
    // The scheduled fire of that time is not taken for a duplicate of it.
    assert!(shown["dedupe_key"].is_null(), "{shown}");
}

/// The `state` of source `name` in `switchyard sources --json`.
fn state_of(sources: &serde_json::Value, name: &str) -> serde_json::Value {
    let source = sources
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("{name} is listed: {sources}"));
    source["state"].clone()
}

fn utc(value: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn sources_shows_every_source_with_its_state() {
    let moto = crate::s3::Moto::connect().await;
    let bucket = moto.bucket().await;
    let queue = moto.queue().await;
    moto.put(&bucket, "a.txt", "one").await;
    let url = fresh_store(Backend::Sqlite).await;
    let dir = Workdir::new();
    let port = free_port();
    let yaml = format!(
        "sources:
  hooks: {{ http: {{ path: /hooks, verify: {{ github: {{ secret: hook-secret-value }} }} }} }}
  inbox: {{ s3: {} }}
  listing: {{ s3: {} }}
  off: {{ cron: {{ schedule: \"0 0 1 1 *\", enabled: false }} }}
  tick: {{ cron: {{ schedule: \"* * * * * *\", timezone: Europe/Berlin }} }}
triggers: {{ t: {{ source: hooks, handler: log }} }}
",
        moto.source(&bucket, &format!("queue_url: \"{queue}\"")),
        moto.source(&bucket, "mode: { polling: { interval: 200ms } }"),
    );
    let config = dir.config(&url, port, &yaml);
    ok(&config, &["migrate"]);

    let text = ok(&config, &["sources", "--json"]);
    assert!(!text.contains("hook-secret-value"), "{text}");
    assert!(!text.contains("\"test\""), "no credentials: {text}");
    let sources: serde_json::Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = sources
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hooks", "inbox", "listing", "off", "tick"]);
    let kinds: Vec<&str> = sources
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["http", "s3", "s3", "cron", "cron"]);
    assert_eq!(
        state_of(&sources, "hooks"),
        serde_json::json!({"path": "/hooks", "verify": "github", "type": "http.request"})
    );
    assert_eq!(
        state_of(&sources, "inbox"),
        serde_json::json!({"bucket": bucket, "mode": "notifications", "queue_url": queue})
    );
    assert_eq!(
        state_of(&sources, "listing"),
        serde_json::json!({"bucket": bucket, "mode": "polling", "interval": "200ms", "listed_objects": null})
    );
    let off = state_of(&sources, "off");
    assert_eq!(off["enabled"], false, "{off}");
    assert!(
        off["next_fire"].is_null(),
        "a disabled schedule never fires: {off}"
    );
    let tick = state_of(&sources, "tick");
    assert_eq!(tick["schedule"], "* * * * * *", "{tick}");
    assert_eq!(tick["timezone"], "Europe/Berlin", "{tick}");
    assert!(tick["last_fire"].is_null(), "nothing fired yet: {tick}");
    assert!(utc(&tick["next_fire"]) > chrono::Utc::now() - chrono::Duration::seconds(1));
    // The fields keep their order in the JSON text.
    let order: Vec<usize> = [
        "\"schedule\"",
        "\"timezone\"",
        "\"enabled\"",
        "\"next_fire\"",
        "\"last_fire\"",
    ]
    .iter()
    .map(|field| text.rfind(field).unwrap())
    .collect();
    assert!(order.is_sorted(), "{text}");

    let table = at_width(&config, &["sources"], "300");
    let row = |name: &str| row_of(&table, name);
    assert!(table.starts_with("source"), "{table}");
    assert!(
        row("hooks") == "hooks    http  path=/hooks  verify=github  type=http.request",
        "{table}"
    );
    assert!(
        row("tick")
            .contains("schedule=\"* * * * * *\"  timezone=Europe/Berlin  enabled=true  next_fire="),
        "{table}"
    );
    assert!(row("tick").ends_with("last_fire=-"), "{table}");
    assert!(
        row("listing").ends_with("interval=200ms  listed_objects=-"),
        "{table}"
    );
    assert!(row("off").contains("enabled=false  next_fire=-"), "{table}");

    // A running engine fires the schedule and saves the listing; the command, with the
    // engine still running or not, reads both from the store.
    let before = chrono::Utc::now();
    let engine = crate::crash::spawn(&config);
    crate::crash::wait_ready(port).await;
    let sources = crate::support::eventually(
        std::time::Duration::from_secs(30),
        "a fire and a listing",
        || {
            let config = config.clone();
            async move {
                let sources: serde_json::Value =
                    serde_json::from_str(&ok(&config, &["sources", "--json"])).unwrap();
                let fired = !state_of(&sources, "tick")["last_fire"].is_null();
                let listed = state_of(&sources, "listing")["listed_objects"] == 1;
                (fired && listed).then_some(sources)
            }
        },
    )
    .await;
    // The admin API answers what the command prints.
    let api: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/api/sources"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let foreign = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/sources"))
        .header("Origin", "http://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403, "the admin API's checks apply");
    drop(engine);
    assert_eq!(api.as_array().unwrap().len(), 5, "{api}");
    for name in ["hooks", "inbox", "off"] {
        assert_eq!(state_of(&api, name), state_of(&sources, name), "{name}");
    }
    assert_eq!(state_of(&api, "listing")["listed_objects"], 1, "{api}");
    assert!(!state_of(&api, "tick")["last_fire"].is_null(), "{api}");
    assert_eq!(state_of(&sources, "listing")["listed_objects"], 1);
    // Nothing runs now: the JSON and the table agree on the last fire.
    let sources: serde_json::Value =
        serde_json::from_str(&ok(&config, &["sources", "--json"])).unwrap();
    let tick = state_of(&sources, "tick");
    let last = utc(&tick["last_fire"]);
    assert!(last >= before - chrono::Duration::seconds(1), "{tick}");
    assert!(last <= chrono::Utc::now(), "{tick}");
    assert!(utc(&tick["next_fire"]) > last, "{tick}");
    let table = at_width(&config, &["sources"], "300");
    let last_fire = format!("last_fire={}", tick["last_fire"].as_str().unwrap());
    assert!(row_of(&table, "tick").ends_with(&last_fire), "{table}");
    assert!(
        row_of(&table, "listing").ends_with("listed_objects=1"),
        "{table}"
    );
}

/// The row of source `name` in a `switchyard sources` table.
fn row_of(table: &str, name: &str) -> String {
    table
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name}: {table}"))
        .to_owned()
}
