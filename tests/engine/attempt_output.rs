//! What handlers said: each attempt's output (a command's stdout and stderr, a
//! webhook response's status and body) is stored, with configured secrets redacted,
//! and `switchyard event ID` shows it.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::json;
use switchyard::Engine;
use switchyard_store::{DeliveryStatus, EventDetail};
use uuid::Uuid;

use crate::crash::{Workdir, cli, free_port};
use crate::support::{Backend, eventually, fresh_store, open, post_json, start};

const TOKEN: &str = "canary-header-token-6a7b";

/// A receiver that answers 200 and quotes the `Authorization` header it got.
async fn quoting_receiver() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/hook",
        post(|headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            format!("accepted\nyou sent: {auth}")
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn finished(store: &dyn switchyard_store::Store, id: Uuid) -> EventDetail {
    eventually(
        Duration::from_secs(30),
        "every delivery to finish",
        || async {
            let detail = store.get_event(id).await.ok()??;
            let done = detail
                .deliveries
                .iter()
                .all(|d| matches!(d.status, DeliveryStatus::Succeeded | DeliveryStatus::Dead));
            (done && detail.deliveries.len() == 3).then_some(detail)
        },
    )
    .await
}

async fn output_of_every_attempt_is_kept_and_shown(backend: Backend) {
    let store = fresh_store(backend).await;
    let receiver = quoting_receiver().await;
    let triggers = format!(
        r#"
sources: {{ jobs: {{ http: {{ path: /jobs }} }} }}
triggers:
  hook:
    source: jobs
    handler: {{ webhook: {{ url: "http://127.0.0.1:{receiver}/hook", headers: {{ Authorization: "Bearer {TOKEN}" }} }} }}
  talk:
    source: jobs
    handler: {{ command: {{ program: sh, args: ["-c", "echo to-stdout; echo to-stderr >&2"] }} }}
  fail:
    source: jobs
    handler: {{ command: {{ program: sh, args: ["-c", "echo partial work; echo {TOKEN} >&2; exit 3"] }} }}
"#
    );
    let engine = start(Engine::from_cli(), &triggers, &store).await;
    let response = post_json(engine.local_addr(), "/jobs", json!({"n": 1}), &[]).await;
    assert_eq!(response.status(), 202);
    let id: Uuid = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let reader = open(&store).await;
    let detail = finished(&*reader, id).await;
    engine.shutdown().await;

    let output = |trigger: &str| {
        let delivery = detail
            .deliveries
            .iter()
            .find(|d| d.trigger == trigger)
            .unwrap();
        delivery.attempt_log[0].output.clone().unwrap_or_default()
    };
    assert_eq!(
        output("hook"),
        "status: 200\naccepted\nyou sent: ***",
        "the header's secret is redacted"
    );
    assert_eq!(output("talk"), "stdout:\nto-stdout\nstderr:\nto-stderr\n");
    assert_eq!(output("fail"), "stdout:\npartial work\nstderr:\n***\n");
    let fail = detail
        .deliveries
        .iter()
        .find(|d| d.trigger == "fail")
        .unwrap();
    assert_eq!(
        fail.last_error.as_deref(),
        Some("fatal: command `sh` exited with status 3: ***"),
        "the error quoting stderr is redacted too"
    );

    let dir = Workdir::new();
    let config = dir.config(&store, free_port(), &triggers);
    let shown = cli(&config, &["event", &id.to_string()]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    for expected in [
        "to hook, attempt 1:\n    status: 200\n    accepted\n    you sent: ***\n",
        "to talk, attempt 1:\n    stdout:\n    to-stdout\n    stderr:\n    to-stderr\n",
        "to fail, attempt 1:\n    stdout:\n    partial work\n    stderr:\n    ***\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains(TOKEN), "{text}");
}

crate::both_backends!(output_of_every_attempt_is_kept_and_shown);
