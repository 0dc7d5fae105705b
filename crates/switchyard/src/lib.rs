//! Switchyard: an event-trigger engine, and the SDK its plugins are written against.
//!
//! This crate is the only one plugin authors depend on. It holds the handler SDK
//! ([`Handler`], [`Context`], [`HandlerError`]), the [`Engine`] that gives a user's
//! binary the whole CLI, and the runtime behind it: sources, the dispatcher, built-in
//! handlers and the HTTP server.
//!
//! ```no_run
//! use switchyard::{Context, Engine, Event, HandlerError, handler_fn};
//!
//! async fn resize_image(_ctx: Context, event: Event) -> Result<(), HandlerError> {
//!     let key: String = event.data_as()?;
//!     println!("resizing {key}");
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     Engine::from_cli().handler("resize_image", handler_fn(resize_image)).run().await
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
mod server;
mod sources;
pub mod testkit;

/// The AWS S3 SDK that [`Context::s3`] returns clients of; use it from here so that
/// your handlers build against the same version.
pub use aws_sdk_s3;
pub use engine::{Engine, EngineError, RunningEngine};
pub use handler::{
    Context, ErrorKind, FnHandler, Handler, HandlerError, HandlerFuture, OUTPUT_LIMIT, handler_fn,
    idempotency_key,
};
pub use switchyard_core::{Event, config};
pub use switchyard_store::{EventQuery, Store};
