//! The [`Engine`]: handler registration, the CLI entry point, and the running
//! engine (store, ingress, dispatcher and HTTP server) behind `switchyard run`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use switchyard_core::config::{BuiltinHandler, Config, ConfigErrors, HandlerSpec, SourceConfig};
use switchyard_store::{Store, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Dispatcher, Redactor, Slots, TriggerRuntime};
use crate::handler::{Handler, Registry, Resources};
use crate::handlers;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::server;
use crate::sources::SourceDeps;
use crate::sources::cron::CronRuntime;
use crate::sources::http::HttpSourceRuntime;
use crate::sources::s3::{AwsClients, S3Clients, S3Runtime};

/// The engine a user's binary builds: register handlers, then hand over to the CLI.
///
/// ```no_run
/// # use switchyard::{Engine, handler_fn, Context, Event, HandlerError};
/// # async fn f(_: Context, _: Event) -> Result<(), HandlerError> { Ok(()) }
/// # async fn main_() -> std::process::ExitCode {
/// Engine::from_cli().handler("resize_image", handler_fn(f)).run().await
/// # }
/// ```
#[derive(Default)]
pub struct Engine {
    pub(crate) registry: Registry,
    pub(crate) resources: Resources,
    args: Option<Vec<OsString>>,
    pub(crate) program: Option<Program>,
}

/// The name and version of a binary that embeds the engine.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub name: String,
    pub version: String,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("trigger {trigger:?}: {reason}")]
    Handler { trigger: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Engine {
    /// An engine that reads its command line from the process arguments when run.
    pub fn from_cli() -> Self {
        Self::default()
    }

    /// An engine that runs the given command line instead of the process arguments
    /// (the first item is the program name).
    pub fn with_args<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Self {
            args: Some(args.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// Names the binary that embeds the engine, for its help and `--version`, which
    /// then prints `NAME VERSION (switchyard X.Y.Z)`: which Switchyard it embeds. Pass
    /// `env!("CARGO_PKG_NAME")` and `env!("CARGO_PKG_VERSION")`. Without it, the CLI
    /// calls itself `switchyard`, with Switchyard's version.
    pub fn program(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.program = Some(Program {
            name: name.into(),
            version: version.into(),
        });
        self
    }

    /// Registers a handler under `name`; triggers refer to it with `handler: name`.
    pub fn handler(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.registry.insert(name, handler);
        self
    }

    /// Shares a value (a client, a pool) with every handler through
    /// [`Context::resource`](crate::Context::resource).
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(value);
        self
    }

    /// Parses the command line and runs the command. Errors are printed as one line on
    /// stderr, with a non-zero exit code.
    pub async fn run(self) -> ExitCode {
        let args = self
            .args
            .clone()
            .unwrap_or_else(|| std::env::args_os().collect());
        crate::cli::main(self, args).await
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Loads, validates and starts everything `config` describes, in this process:
    /// the store (migrated), ingress, the dispatcher, retention and the HTTP listener. Returns
    /// once the listener is bound.
    pub async fn start(self, config: Config) -> Result<RunningEngine, EngineError> {
        let registry = self.registry;
        config.validate(&|name| registry.contains(name))?;
        let store = switchyard_store::open(&config.store).await?;
        for migration in store.migrate().await? {
            tracing::info!(
                version = migration.version,
                description = %migration.description,
                "applied migration"
            );
        }
        let mut runtime = EngineRuntime::build(&config, store, &registry, self.resources).await?;
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
        let mut sources = Vec::new();
        for cron in std::mem::take(&mut runtime.cron_sources) {
            sources.push(tokio::spawn(
                cron.run(runtime.source_deps(), shutdown.clone()),
            ));
        }
        for s3 in std::mem::take(&mut runtime.s3_sources) {
            sources.push(tokio::spawn(
                s3.run(runtime.source_deps(), shutdown.clone()),
            ));
        }
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
}

/// An engine started with [`Engine::start`].
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

/// Everything built from a configuration, shared by the server, the dispatcher and
/// the test kit.
pub(crate) struct EngineRuntime {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<Metrics>,
    pub http_sources: Vec<Arc<HttpSourceRuntime>>,
    pub cron_sources: Vec<CronRuntime>,
    pub s3_sources: Vec<S3Runtime>,
    pub router: Arc<Router>,
    pub wake: Arc<Notify>,
}

impl EngineRuntime {
    /// Builds everything but starts no source. The `s3` sources' clients are built
    /// here (no request is made) and shared with handlers through `resources`.
    pub async fn build(
        config: &Config,
        store: Arc<dyn Store>,
        registry: &Registry,
        mut resources: Resources,
    ) -> Result<Self, EngineError> {
        let metrics = Arc::new(Metrics::new());
        let wake = Arc::new(Notify::new());
        let router = Arc::new(Router::new(config));
        let secrets = config.secret_values();
        let mut triggers = Vec::new();
        for (name, trigger) in config.triggers.iter().filter(|(_, t)| t.enabled) {
            let handler: Arc<dyn Handler> = match &trigger.handler {
                HandlerSpec::Registered(handler) => {
                    registry.get(handler).ok_or_else(|| EngineError::Handler {
                        trigger: name.clone(),
                        reason: format!("no handler named {handler:?} is registered"),
                    })?
                }
                HandlerSpec::Builtin(builtin) => {
                    handlers::build(builtin).map_err(|e| EngineError::Handler {
                        trigger: name.clone(),
                        reason: e.to_string(),
                    })?
                }
            };
            triggers.push(TriggerRuntime {
                name: Arc::from(name.as_str()),
                handler,
                retry: trigger.retry.clone(),
                timeout: trigger.timeout.get(),
                slots: Slots::new(trigger.concurrency, config.dispatcher.prefetch),
                ordered: trigger.ordering.is_some(),
                metrics: metrics.trigger(name),
                redactor: Redactor::new(trigger_secrets(&secrets, &trigger.handler)),
            });
        }
        let mut s3_sources = Vec::new();
        let mut s3_clients = S3Clients::default();
        for (name, source) in &config.sources {
            if let SourceConfig::S3(s3) = source {
                let clients = AwsClients::new(s3).await;
                s3_clients.insert(name, clients.s3.clone());
                s3_sources.extend(S3Runtime::new(name.clone(), s3.clone(), clients));
            }
        }
        resources.insert(s3_clients);
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            triggers,
            config.dispatcher.clone(),
            wake.clone(),
            Arc::new(resources),
        ));
        let ingest = Ingest::start(
            store.clone(),
            router.clone(),
            metrics.clone(),
            dispatcher.clone(),
            wake.clone(),
        );
        let http_sources = config
            .sources
            .iter()
            .filter_map(|(name, source)| match source {
                SourceConfig::Http(http) => {
                    Some(Arc::new(HttpSourceRuntime::new(name.clone(), http.clone())))
                }
                _ => None,
            })
            .collect();
        let cron_sources = config
            .sources
            .iter()
            .filter_map(|(name, source)| match source {
                SourceConfig::Cron(cron) => CronRuntime::new(name.clone(), cron.clone()),
                _ => None,
            })
            .collect();
        Ok(Self {
            store,
            ingest,
            dispatcher,
            metrics,
            http_sources,
            cron_sources,
            s3_sources,
            router,
            wake,
        })
    }

    /// What a source task needs to commit on its own.
    pub fn source_deps(&self) -> SourceDeps {
        SourceDeps {
            store: self.store.clone(),
            router: self.router.clone(),
            metrics: self.metrics.clone(),
            wake: self.wake.clone(),
        }
    }
}

/// The secrets a trigger's output is cleared of: the configuration's, and for a
/// `command` the values of the variables it passes through whose names mark a
/// credential (`API_TOKEN`, `DB_PASSWORD`, ...), as the program gets them.
fn trigger_secrets(config_secrets: &[String], handler: &HandlerSpec) -> Vec<String> {
    let mut secrets = config_secrets.to_vec();
    if let HandlerSpec::Builtin(BuiltinHandler::Command(command)) = handler {
        secrets.extend(
            command
                .env
                .iter()
                .filter(|name| switchyard_core::redact::is_secret(name))
                .filter_map(|name| std::env::var(name).ok()),
        );
    }
    secrets
}
