//! Shared test plumbing: stores on both backends, an in-process engine, HTTP helpers
//! and bounded waiting.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
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

/// A fresh, empty store for one test: a new SQLite file, or a new Postgres database
/// created from `SWITCHYARD_TEST_PG`. Dereferences to its URL. Removed when dropped,
/// unless the test is failing: then it is kept for inspection and its URL printed.
pub struct TestStore {
    url: String,
    place: Place,
}

enum Place {
    File(PathBuf),
    Database { admin: String, name: String },
}

impl Deref for TestStore {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the failed test's store: {}", self.url);
            return;
        }
        match &self.place {
            Place::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            // Drop runs inside the test's runtime, which cannot be blocked on; the
            // statement gets a thread and a runtime of its own.
            Place::Database { admin, name } => {
                let statement = format!("drop database if exists {name} with (force)");
                let admin = admin.clone();
                let dropped = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for dropping the test database")
                        .block_on(async {
                            let mut conn =
                                <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
                            sqlx::Executor::execute(&mut conn, statement.as_str()).await
                        })
                })
                .join();
                if !matches!(dropped, Ok(Ok(_))) {
                    eprintln!("could not drop the test database {name}");
                }
            }
        }
    }
}

/// Creates a [`TestStore`] on `backend`. Fails (never skips) when Postgres is
/// unreachable.
pub async fn fresh_store(backend: Backend) -> TestStore {
    let name = format!("sy_e2e_{}", uuid::Uuid::new_v4().simple());
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            TestStore {
                url: format!("sqlite://{}", path.display()),
                place: Place::File(path),
            }
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
            TestStore {
                url: format!("{base}/{name}"),
                place: Place::Database { admin, name },
            }
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
