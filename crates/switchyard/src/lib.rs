//! Switchyard: an event-trigger engine, and the SDK its plugins are written against.
//!
//! This crate is the only one plugin authors depend on. It holds the handler SDK
//! ([`Handler`], [`Context`], [`HandlerError`]), the [`Engine`] that gives a user's
//! binary the whole CLI, and the runtime behind it: sources, the dispatcher, built-in
//! handlers and the HTTP server.
//!
//! ```no_run
//! use switchyard::prelude::*;
//!
//! async fn resize_image(ctx: Context, event: Event) -> Result<(), HandlerError> {
//!     let key: String = event.data_as()?;
//!     info!(%key, "resizing");
//!     ctx.set_output(json!({ "resized": key }).to_string());
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     Engine::from_cli()
//!         .program(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
//!         .handler("resize_image", handler_fn(resize_image))
//!         .run()
//!         .await
//! }
//! ```
//!
//! What does not belong here: SQL (the `switchyard-store` crate) and the pure model of
//! events and configuration (`switchyard-core`).

mod cli;
mod dispatch;
mod engine;
mod explain;
mod handler;
pub mod handlers;
mod ingest;
mod listener;
mod metrics;
mod replay;
mod retention;
mod router;
mod running;
mod runtime;
mod server;
mod sources;
pub mod testkit;

/// The AWS S3 SDK that [`Context::s3`] returns clients of; use it from here so that
/// your handlers build against the same version.
pub use aws_sdk_s3;
pub use engine::Engine;
pub use handler::{
    Context, ErrorKind, FnHandler, Handler, HandlerError, HandlerFuture, OUTPUT_LIMIT, handler_fn,
    idempotency_key,
};
pub use running::RunningEngine;
pub use runtime::EngineError;
pub use switchyard_core::{Event, config};
pub use switchyard_store::{AttemptOutcome, EventQuery, Store};

/// This crate's version, which an embedding binary's `--version` names (see
/// [`Engine::program`]).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What handler code usually needs, in one import: `use switchyard::prelude::*;`.
///
/// The SDK's types, `json!` for building JSON, and the `tracing` macros the engine's
/// log goes through, so that a handler needs no extra crate for them.
pub mod prelude {
    pub use crate::{
        AttemptOutcome, Context, Engine, Event, Handler, HandlerError, HandlerFuture, handler_fn,
        idempotency_key,
    };
    pub use serde_json::{Value, json};
    pub use tracing::{debug, error, info, trace, warn};
}
