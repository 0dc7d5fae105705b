//! The [`Engine`]: what a user's binary builds (its handlers, resources and name),
//! and its two ways in: the CLI ([`Engine::run`]) and [`Engine::start`].

use std::ffi::OsString;
use std::process::ExitCode;

use switchyard_core::config::Config;

use crate::handler::Handler;
use crate::running::{self, Plugins, Program, RunningEngine};
use crate::runtime::EngineError;

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
    pub(crate) plugins: Plugins,
    args: Option<Vec<OsString>>,
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
        self.plugins.program = Some(Program {
            name: name.into(),
            version: version.into(),
        });
        self
    }

    /// Registers a handler under `name`; triggers refer to it with `handler: name`.
    pub fn handler(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.plugins.registry.insert(name, handler);
        self
    }

    /// Shares a value (a client, a pool) with every handler through
    /// [`Context::resource`](crate::Context::resource).
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.plugins.resources.insert(value);
        self
    }

    /// Parses the command line and runs the command. Errors are printed as one line on
    /// stderr, with a non-zero exit code.
    pub async fn run(self) -> ExitCode {
        let args = self
            .args
            .clone()
            .unwrap_or_else(|| std::env::args_os().collect());
        crate::cli::main(self.plugins, args).await
    }

    /// Loads, validates and starts everything `config` describes, in this process:
    /// the store (migrated), ingress, the dispatcher, retention and the HTTP listener. Returns
    /// once the listener is bound.
    pub async fn start(self, config: Config) -> Result<RunningEngine, EngineError> {
        running::start(self.plugins, config).await
    }
}
