//! Routing explanations: `switchyard explain`, `send --explain`, `event ID` for an
//! event no trigger took, and `GET /api/events/{id}/explain`.

use std::process::Output;

use serde_json::{Value, json};
use switchyard::Engine;

use crate::crash::{Workdir, cli, free_port};
use crate::support::{Backend, client, fresh_store, post_json};

const TRIGGERS: &str = r#"
sources:
  orders: { http: { path: /orders } }
  audits: { http: { path: /audits } }
triggers:
  every: { source: orders, handler: log }
  big:
    source: orders
    handler: log
    filter: { type: http.request, any: [ { data.total: { prefix: "9" } }, { data.vip: true } ] }
  paused: { source: orders, handler: log, enabled: false }
  eu: { source: audits, handler: log, filter: { data.region: { prefix: eu- } } }
"#;

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).expect("the output is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_explains_matched_filtered_and_disabled_triggers() {
    let dir = Workdir::new();
    let store = fresh_store(Backend::Sqlite).await;
    let config = dir.config(&store, free_port(), TRIGGERS);
    stdout(&cli(&config, &["migrate"]));

    let sent = json_of(&cli(
        &config,
        &[
            "send",
            "orders",
            "--data",
            r#"{"total": "5"}"#,
            "--explain",
            "--json",
        ],
    ));
    assert_eq!(sent["triggers"], json!(["every"]));
    let id = sent["id"].as_str().unwrap().to_owned();
    let expected = json!({
        "event_id": id,
        "source_name": "orders",
        "triggers": [
            { "trigger": "big", "result": "filtered_out", "failures": [
                { "place": "any[0].data.total", "path": "data.total",
                  "expected": "prefix \"9\"", "seen": "\"5\"" },
                { "place": "any[1].data.vip", "path": "data.vip",
                  "expected": "true", "seen": null },
            ] },
            { "trigger": "every", "result": "matched" },
            { "trigger": "paused", "result": "disabled" },
        ],
    });
    assert_eq!(sent["explanation"], expected);
    assert_eq!(
        json_of(&cli(&config, &["explain", &id, "--json"])),
        expected,
        "explain of the stored event says what send --explain said"
    );

    let text = stdout(&cli(&config, &["explain", &id]));
    assert!(
        text.contains(&format!(
            "1 of 3 trigger(s) of source orders match event {id}"
        )),
        "{text}"
    );
    assert!(text.contains("  big     filtered out"), "{text}");
    assert!(text.contains("  every   matched"), "{text}");
    assert!(
        text.contains("any[0].data.total: expected prefix \"9\", saw \"5\""),
        "{text}"
    );
    assert!(
        text.contains("any[1].data.vip: expected true, but the event has no data.vip"),
        "{text}"
    );
    assert!(text.contains("  paused  disabled"), "{text}");

    let sent = stdout(&cli(
        &config,
        &[
            "send",
            "orders",
            "--data",
            r#"{"total": "99"}"#,
            "--explain",
        ],
    ));
    assert!(sent.contains("→ big, every"), "{sent}");
    assert!(
        sent.contains("2 of 3 trigger(s) of source orders match"),
        "{sent}"
    );

    let unknown = cli(
        &config,
        &["explain", "00000000-0000-7000-8000-000000000000"],
    );
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no event 00000000-0000-7000-8000-000000000000"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_says_no_trigger_matched_and_why() {
    let dir = Workdir::new();
    let store = fresh_store(Backend::Sqlite).await;
    let config = dir.config(&store, free_port(), TRIGGERS);
    stdout(&cli(&config, &["migrate"]));
    let sent = json_of(&cli(
        &config,
        &[
            "send",
            "audits",
            "--data",
            r#"{"region": "us-east-1"}"#,
            "--json",
        ],
    ));
    assert_eq!(sent["triggers"], json!([]));
    let id = sent["id"].as_str().unwrap();

    let text = stdout(&cli(&config, &["event", id]));
    assert!(text.contains("no trigger matched"), "{text}");
    assert!(
        text.contains("data.region: expected prefix \"eu-\", saw \"us-east-1\""),
        "{text}"
    );
    assert!(
        !text.contains("delivery"),
        "no empty deliveries table: {text}"
    );
    let detail = json_of(&cli(&config, &["event", id, "--json"]));
    assert_eq!(detail["deliveries"], json!([]), "--json is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_explains_an_event() {
    let store = fresh_store(Backend::Sqlite).await;
    let text = format!(
        "store: {}\nhttp: {{ listen: 127.0.0.1:0, admin_token: explain-t0ken }}\n{TRIGGERS}",
        &*store
    );
    let config = switchyard::config::Config::parse(&text, &switchyard::config::ProcessEnv)
        .expect("the test config is valid");
    let engine = Engine::from_cli().start(config).await.unwrap();
    let addr = engine.local_addr();

    let response = post_json(addr, "/orders", json!({"vip": true, "total": "1"}), &[]).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let explain = |id: String, token: Option<&'static str>| {
        let mut request = client().get(format!("http://{addr}/api/events/{id}/explain"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let response = explain(id.clone(), Some("explain-t0ken")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["event_id"], id.as_str());
    let results: Vec<(&str, &str)> = body["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["trigger"].as_str().unwrap(),
                t["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("big", "filtered_out"),
            ("every", "matched"),
            ("paused", "disabled")
        ],
        "an HTTP source's payload is under data.body, so data.vip is missing"
    );

    let response = explain(id, None).await.unwrap();
    assert_eq!(response.status(), 401, "the admin token guards it");
    let unknown = "00000000-0000-7000-8000-000000000000".to_owned();
    let response = explain(unknown, Some("explain-t0ken")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("no event"));
    engine.shutdown().await;
}
