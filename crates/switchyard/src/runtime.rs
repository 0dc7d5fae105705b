//! The runtime one configuration builds: the store, ingress, the dispatcher, metrics
//! and the sources, before anything is started. `running.rs` starts it for
//! `switchyard run`; the test kit drives it step by step.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_core::config::{BuiltinHandler, Config, ConfigErrors, HandlerSpec};
use switchyard_store::{Store, StoreError};
use tokio::sync::Notify;

use crate::dispatch::{Dispatcher, Redactor, Slots, TriggerRuntime};
use crate::handler::{Handler, Registry, Resources};
use crate::handlers;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::sources::{self, BuildContext, Source, SourceDeps};

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

/// Everything built from a configuration, shared by the server, the dispatcher and
/// the test kit.
pub(crate) struct EngineRuntime {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<Metrics>,
    /// Every source that runs, built by its kind.
    pub sources: Vec<Arc<dyn Source>>,
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
        let mut context = BuildContext::default();
        let mut built = Vec::new();
        for (name, source) in &config.sources {
            if let Some(kind) = sources::kind(source) {
                built.extend(kind.build(name, &mut context).await);
            }
        }
        resources.insert(context.s3_clients);
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
        Ok(Self {
            store,
            ingest,
            dispatcher,
            metrics,
            sources: built,
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
