//! A Switchyard binary with three Rust handlers. It has the whole `switchyard` CLI:
//!
//! ```text
//! cargo run -p switchyard-example-plugin -- run --config examples/plugin/triggers.yaml
//! ```

use std::process::ExitCode;

use switchyard::prelude::*;
use switchyard_example_plugin::{OrderTotals, greet, make_derivative};

#[tokio::main]
async fn main() -> ExitCode {
    Engine::from_cli()
        .program(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .handler("greet", handler_fn(greet))
        .handler("order_totals", OrderTotals::default())
        .handler("make_derivative", handler_fn(make_derivative))
        .run()
        .await
}
