//! Testing handlers without infrastructure: an in-memory store, real routing and
//! retry policy, and "execute the next delivery" on demand.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard::{Context, Engine, Event, HandlerError, handler_fn};
//! use switchyard::testkit::TestKit;
//!
//! async fn greet(_: Context, event: Event) -> Result<(), HandlerError> {
//!     let name: String = event.data_as()?;
//!     if name.is_empty() { return Err(HandlerError::fatal("no name")); }
//!     Ok(())
//! }
//!
//! let kit = TestKit::new(
//!     Engine::from_cli().handler("greet", handler_fn(greet)),
//!     "sources: { hello: { http: { path: /hello } } }\n\
//!      triggers: { greet: { source: hello, handler: greet } }",
//! ).await?;
//! kit.send("hello", serde_json::json!("Ada")).await?;
//! let executed = kit.run_next().await?.expect("one delivery");
//! assert!(executed.succeeded());
//! # Ok(()) }
//! ```

use std::sync::Arc;

use switchyard_core::Event;
use switchyard_core::config::{Config, ProcessEnv};
use switchyard_store::{AttemptOutcome, Store, StoreError};
use uuid::Uuid;

pub use crate::dispatch::{Executed, Verdict};
use crate::engine::Engine;
use crate::ingest::IngestError;
use crate::runtime::{EngineError, EngineRuntime};

/// A store in memory plus the engine's routing and dispatcher, driven step by step.
pub struct TestKit {
    config: Config,
    runtime: EngineRuntime,
}

/// Why a test kit call failed.
#[derive(Debug, thiserror::Error)]
pub enum TestKitError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{0}")]
    Source(String),
}

impl TestKit {
    /// Builds the engine described by `yaml` on an in-memory SQLite store (the `store`
    /// key of the YAML is ignored). Environment variables are interpolated.
    pub async fn new(engine: Engine, yaml: &str) -> Result<Self, TestKitError> {
        let mut config = Config::parse(yaml, &ProcessEnv).map_err(EngineError::from)?;
        config.store = "sqlite::memory:".to_owned();
        config
            .validate(&|name| engine.plugins.registry.contains(name))
            .map_err(EngineError::from)?;
        let store = switchyard_store::open(&config.store).await?;
        store.migrate().await?;
        let runtime = EngineRuntime::build(
            &config,
            store,
            &engine.plugins.registry,
            engine.plugins.resources,
        )
        .await?;
        Ok(Self { config, runtime })
    }

    /// Sends `data` as an event from `source`, shaped as that source's kind would
    /// shape it, and returns its id.
    pub async fn send(&self, source: &str, data: serde_json::Value) -> Result<Uuid, TestKitError> {
        let event = crate::sources::synthetic_event(&self.config, source, None, data)
            .map_err(TestKitError::Source)?;
        self.send_event(event).await
    }

    /// Sends a fully built event. Its `source_name` must name a configured source.
    pub async fn send_event(&self, event: Event) -> Result<Uuid, TestKitError> {
        Ok(self.runtime.ingest.submit(event).await?.id())
    }

    /// Claims and runs the next runnable delivery, as the dispatcher would, and records
    /// its attempt. `None` when nothing is runnable now (retries wait for their
    /// backoff: use a short `retry.initial` in tests).
    pub async fn run_next(&self) -> Result<Option<Executed>, TestKitError> {
        Ok(self.runtime.dispatcher.run_next().await?)
    }

    /// Runs deliveries until none is runnable now; returns what ran, in order.
    pub async fn run_until_idle(&self) -> Result<Vec<Executed>, TestKitError> {
        let mut executed = Vec::new();
        while let Some(one) = self.run_next().await? {
            executed.push(one);
        }
        Ok(executed)
    }

    /// The store, to inspect events, deliveries and attempts.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.runtime.store
    }
}

impl Executed {
    /// Whether the attempt succeeded.
    pub fn succeeded(&self) -> bool {
        self.verdict.outcome == AttemptOutcome::Succeeded
    }

    /// Whether the delivery was dead-lettered by this attempt.
    pub fn dead(&self) -> bool {
        self.verdict.outcome == AttemptOutcome::Dead
    }
}
