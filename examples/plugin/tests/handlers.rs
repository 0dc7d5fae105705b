//! The example handlers under the test kit: no server, no database to install.

use std::sync::Arc;

use switchyard::prelude::*;
use switchyard::testkit::TestKit;
use switchyard_example_plugin::{OrderTotals, greet, make_derivative};

const CONFIG: &str = include_str!("../triggers.yaml");

/// Lets the test keep a handle on the handler's state.
struct Shared(Arc<OrderTotals>);

impl Handler for Shared {
    fn handle<'a>(&'a self, ctx: Context, event: Event) -> HandlerFuture<'a> {
        self.0.handle(ctx, event)
    }
}

#[tokio::test]
async fn greet_succeeds_and_rejects_bad_input_fatally() {
    let totals = Arc::new(OrderTotals::default());
    let engine = Engine::from_cli()
        .handler("greet", handler_fn(greet))
        .handler("order_totals", Shared(totals))
        .handler("make_derivative", handler_fn(make_derivative));
    let kit = TestKit::new(engine, CONFIG).await.unwrap();

    kit.send("greetings", json!({"body": {"name": "Ada"}}))
        .await
        .unwrap();
    let executed = kit.run_next().await.unwrap().expect("a delivery");
    assert!(executed.succeeded(), "{:?}", executed.verdict);
    assert_eq!(executed.output.as_deref(), Some("greeted Ada"));
    let event = kit
        .store()
        .get_event(executed.claimed.event.switchyard_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event.deliveries[0].attempt_log[0].output.as_deref(),
        Some("greeted Ada"),
        "the store keeps what the handler said"
    );

    kit.send("greetings", json!({"body": {"nom": "Ada"}}))
        .await
        .unwrap();
    let executed = kit.run_next().await.unwrap().expect("a delivery");
    assert!(executed.dead(), "a payload that does not decode is fatal");
    assert!(
        executed
            .verdict
            .error
            .as_deref()
            .unwrap()
            .starts_with("fatal:")
    );
    assert!(kit.run_next().await.unwrap().is_none());
}

#[tokio::test]
async fn order_totals_add_up_per_customer() {
    let totals = Arc::new(OrderTotals::default());
    let engine = Engine::from_cli()
        .handler("greet", handler_fn(greet))
        .handler("order_totals", Shared(totals.clone()))
        .handler("make_derivative", handler_fn(make_derivative));
    let kit = TestKit::new(engine, CONFIG).await.unwrap();
    for (customer, cents) in [("c1", 250), ("c2", 100), ("c1", 50)] {
        kit.send(
            "orders",
            json!({"body": {"customer": customer, "total_cents": cents}}),
        )
        .await
        .unwrap();
    }
    let executed = kit.run_until_idle().await.unwrap();
    assert_eq!(executed.len(), 3);
    assert!(executed.iter().all(|e| e.succeeded()));
    assert_eq!(totals.total("c1"), 300);
    assert_eq!(totals.total("c2"), 100);
}

/// The binary says which Switchyard it embeds.
#[test]
fn version_names_the_program_and_its_switchyard() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-example-plugin"))
        .arg("--version")
        .output()
        .expect("the example binary runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "switchyard-example-plugin {} (switchyard {})\n",
            env!("CARGO_PKG_VERSION"),
            switchyard::VERSION
        )
    );
}
