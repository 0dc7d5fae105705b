//! Shared test plumbing: stores on both backends, an in-process engine, HTTP helpers
//! and bounded waiting.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard::Engine;
use switchyard::RunningEngine;
use switchyard::config::{Config, ProcessEnv};
use switchyard_store::Store;

/// Which store a scenario runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty store URL for one test: a new SQLite file, or a new Postgres
/// database created from `SWITCHYARD_TEST_PG`. Fails (never skips) when Postgres is
/// unreachable.
pub async fn fresh_store_url(backend: Backend) -> String {
    let name = format!("sy_e2e_{}", uuid::Uuid::new_v4().simple());
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            format!("sqlite://{}", path.display())
        }
        Backend::Postgres => {
            let admin = std::env::var("SWITCHYARD_TEST_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("Postgres for tests is unreachable at {admin} ({e}); run scripts/test.sh, which starts it"));
            sqlx::Executor::execute(&mut conn, format!("create database {name}").as_str())
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(base, _)| base)
                .to_owned();
            format!("{base}/{name}")
        }
    }
}

/// Parses a test configuration, with `STORE` standing for the store URL.
pub fn config(yaml: &str, store: &str) -> Config {
    let text = format!("store: {store}\nhttp: {{ listen: 127.0.0.1:0 }}\n{yaml}");
    Config::parse(&text, &ProcessEnv).unwrap_or_else(|e| panic!("test config is invalid:\n{e}"))
}

/// Starts an engine in this process.
pub async fn start(engine: Engine, yaml: &str, store: &str) -> RunningEngine {
    engine
        .start(config(yaml, store))
        .await
        .expect("engine starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: serde_json::Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().post(format!("http://{addr}{path}")).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent")
}

/// The text of the engine's `/metrics`.
pub async fn metrics(addr: SocketAddr) -> String {
    client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("request sent")
        .text()
        .await
        .expect("a text body")
}

/// Polls `check` until it returns `Some`, failing the test after `limit`. This bounds
/// a wait; it does not assert anything about timing.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a second handle on a store, as another process would.
pub async fn open(url: &str) -> Arc<dyn Store> {
    let store = switchyard_store::open(url).await.expect("store opens");
    store.migrate().await.expect("migrated");
    store
}

/// Declares one `#[tokio::test]` per backend for a scenario `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}
