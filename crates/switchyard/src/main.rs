//! The `switchyard` binary: the engine with the built-in handlers only. To add Rust
//! handlers, build your own binary with `switchyard::Engine` (see `docs/handlers.md`).

use std::process::ExitCode;

/// mimalloc instead of the system allocator: ingest allocates per request (body, JSON,
/// rows), and the benchmarks measured it faster; see `docs/benchmarks.md`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    switchyard::Engine::from_cli().run().await
}
