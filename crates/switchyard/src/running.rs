//! `switchyard run`: starting what `runtime.rs` builds (the HTTP listener, the
//! dispatcher loop, the sources and retention) and stopping it again.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_core::config::Config;
use switchyard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::handler::{Registry, Resources};
use crate::runtime::{EngineError, EngineRuntime};
use crate::server;

/// What a user's binary registers before the CLI runs: its handlers, the resources
/// they share, and its name and version.
#[derive(Default)]
pub(crate) struct Plugins {
    pub registry: Registry,
    pub resources: Resources,
    pub program: Option<Program>,
}

/// The name and version of a binary that embeds the engine.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub name: String,
    pub version: String,
}

/// Loads, validates and starts everything `config` describes, in this process:
/// the store (migrated), ingress, the dispatcher, retention and the HTTP listener. Returns
/// once the listener is bound.
pub(crate) async fn start(plugins: Plugins, config: Config) -> Result<RunningEngine, EngineError> {
    let registry = plugins.registry;
    config.validate(&|name| registry.contains(name))?;
    let store = switchyard_store::open(&config.store).await?;
    for migration in store.migrate().await? {
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            "applied migration"
        );
    }
    let runtime = EngineRuntime::build(&config, store, &registry, plugins.resources).await?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| EngineError::Listen {
            addr: config.http.listen,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| EngineError::Listen {
            addr: config.http.listen,
            source,
        })?;
    let shutdown = CancellationToken::new();
    let app = server::router(&config, &runtime);
    let server = tokio::spawn(
        crate::listener::Listener::new(listener, app, &config.http).serve(shutdown.clone()),
    );
    let dispatcher = runtime.dispatcher.clone().start(shutdown.clone());
    let sources = runtime
        .sources
        .iter()
        .filter_map(|source| source.clone().run(runtime.source_deps(), shutdown.clone()))
        .map(tokio::spawn)
        .collect();
    let retention = tokio::spawn(crate::retention::run(
        runtime.store.clone(),
        config.retention.clone(),
        runtime.metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(%local_addr, store = %switchyard_core::config::redact_url(&config.store), triggers = config.triggers.len(), "switchyard is running");
    Ok(RunningEngine {
        local_addr,
        store: runtime.store.clone(),
        shutdown,
        server,
        dispatcher,
        retention,
        sources,
    })
}

/// An engine started with [`Engine::start`](crate::Engine::start).
pub struct RunningEngine {
    local_addr: SocketAddr,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    /// Deletes what has expired, every `retention.interval`.
    retention: JoinHandle<()>,
    /// Source tasks that run on their own (cron, s3).
    sources: Vec<JoinHandle<()>>,
}

impl RunningEngine {
    /// Where the HTTP listener is bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The store, for inspecting the event log.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stops accepting requests, receiving and claiming work, lets in-flight
    /// deliveries finish within the grace period, releases the rest, and returns once
    /// every source has stopped too.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let tasks = [self.server, self.dispatcher, self.retention]
            .into_iter()
            .chain(self.sources);
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a task failed while stopping");
            }
        }
    }
}
