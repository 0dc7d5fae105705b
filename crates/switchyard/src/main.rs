//! The `switchyard` binary: the engine with the built-in handlers only. To add Rust
//! handlers, build your own binary with `switchyard::Engine` (see `docs/handlers.md`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    switchyard::Engine::from_cli().run().await
}
