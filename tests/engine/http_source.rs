//! The HTTP surface: verification, limits, malformed input, backpressure, health,
//! metrics and the admin API.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::Engine;

use crate::support::{Backend, TestStore, client, eventually, fresh_store, metrics, post_json};

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn yaml() -> String {
    format!(
        r#"
http: {{ listen: 127.0.0.1:0, admin_token: admin-t0ken }}
sources:
  github: {{ http: {{ path: /hooks/github, verify: {{ github: {{ secret: "{GITHUB_SECRET}" }} }} }} }}
  small: {{ http: {{ path: /small, body_limit: 16 }} }}
  open: {{ http: {{ path: /open }} }}
triggers:
  log-github: {{ source: github, handler: log }}
  log-open: {{ source: open, handler: log }}
"#
    )
}

/// The store comes first, so that a caller's binding of it outlives the engine.
async fn engine(backend: Backend) -> (TestStore, switchyard::RunningEngine) {
    let store = fresh_store(backend).await;
    // The test config sets `http` itself, so build it without the support prefix.
    let text = format!("store: {}\n{}", &*store, yaml());
    let config = switchyard::config::Config::parse(&text, &switchyard::config::ProcessEnv).unwrap();
    let engine = Engine::from_cli().start(config).await.unwrap();
    (store, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_limits_and_malformed_input() {
    let (_store, engine) = engine(Backend::Sqlite).await;
    let base = format!("http://{}", engine.local_addr());
    let http = client();

    let signed = http
        .post(format!("{base}/hooks/github"))
        .header("X-Hub-Signature-256", GITHUB_SIGNATURE)
        .header("X-GitHub-Delivery", "d-1")
        .body("Hello, World!");
    let response = signed.send().await.unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].is_string());

    let tampered = http
        .post(format!("{base}/hooks/github"))
        .header("X-Hub-Signature-256", GITHUB_SIGNATURE)
        .body("Hello, World?")
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);
    let reason: Value = tampered.json().await.unwrap();
    let reason = reason["error"].as_str().unwrap();
    assert!(reason.starts_with("verification failed"), "{reason}");
    assert!(!reason.contains(GITHUB_SECRET));

    let unsigned = http
        .post(format!("{base}/hooks/github"))
        .body("Hello, World!")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    let too_big = http
        .post(format!("{base}/small"))
        .body("x".repeat(17))
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let fits = http
        .post(format!("{base}/small"))
        .body("x".repeat(16))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 202);

    let not_json = http
        .post(format!("{base}/open"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let bad_event = http
        .post(format!("{base}/open"))
        .header("content-type", "application/cloudevents+json")
        .body(r#"{"specversion":"1.0","source":"/x","type":"t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_event.status(), 400);
    let reason: Value = bad_event.json().await.unwrap();
    assert_eq!(reason["error"], "the CloudEvent has no \"id\" attribute");

    // Structured CloudEvents dedupe on source + id.
    let ce = json!({"specversion": "1.0", "id": "e-1", "source": "/billing", "type": "invoice.paid", "data": {"amount": 3}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = http
            .post(format!("{base}/open"))
            .header("content-type", "application/cloudevents+json")
            .body(ce.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        ids.push(response.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_admin_api() {
    let (_store, engine) = engine(Backend::Sqlite).await;
    let base = format!("http://{}", engine.local_addr());
    let http = client();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let response = post_json(engine.local_addr(), "/open", json!({"hello": "world"}), &[]).await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let denied = http.get(format!("{base}/api/events")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let events: Value = eventually(Duration::from_secs(10), "the delivery to succeed", || {
        let http = http.clone();
        let url = format!("{base}/api/events?source=open");
        async move {
            let events: Value = http
                .get(url)
                .bearer_auth("admin-t0ken")
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (events[0]["succeeded"] == 1).then_some(events)
        }
    })
    .await;
    assert_eq!(events[0]["id"], id.as_str());
    let detail: Value = http
        .get(format!("{base}/api/events/{id}"))
        .bearer_auth("admin-t0ken")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["deliveries"][0]["trigger"], "log-open");
    assert_eq!(
        detail["deliveries"][0]["attempt_log"][0]["outcome"],
        "succeeded"
    );
    let replay = http
        .post(format!("{base}/api/events/{id}/replay"))
        .bearer_auth("admin-t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);

    let metrics = metrics(engine.local_addr()).await;
    for name in [
        "switchyard_events_received_total{source=\"open\"} 1",
        "switchyard_deliveries_total{trigger=\"log-open\",outcome=\"succeeded\"}",
        "switchyard_attempt_duration_seconds_bucket",
        "switchyard_queue_depth",
        "switchyard_oldest_pending_age_seconds",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    engine.shutdown().await;
}

/// When the store cannot commit, ingress answers 503 with Retry-After, never 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_answers_503() {
    let (store_url, engine) = engine(Backend::Postgres).await;
    let database = store_url.rsplit('/').next().unwrap().to_owned();
    let admin = std::env::var("SWITCHYARD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    for statement in [
        format!("alter database {database} allow_connections false"),
        format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{database}'"
        ),
    ] {
        sqlx::Executor::execute(&mut conn, statement.as_str())
            .await
            .unwrap();
    }
    let response = post_json(engine.local_addr(), "/open", json!({"n": 1}), &[]).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let ready = client()
        .get(format!("http://{}/readyz", engine.local_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    sqlx::Executor::execute(
        &mut conn,
        format!("alter database {database} allow_connections true").as_str(),
    )
    .await
    .unwrap();
    let response = eventually(
        Duration::from_secs(20),
        "the store to come back",
        || async {
            let response = post_json(engine.local_addr(), "/open", json!({"n": 2}), &[]).await;
            (response.status() == 202).then_some(response)
        },
    )
    .await;
    assert!(response.json::<Value>().await.unwrap()["id"].is_string());
    engine.shutdown().await;
}
