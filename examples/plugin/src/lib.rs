//! Two example handlers: a plain async function and a stateful struct.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use switchyard::{Context, Event, Handler, HandlerError, HandlerFuture};

/// The JSON a client posts to `/hooks/greet`.
#[derive(Debug, Deserialize)]
pub struct Greeting {
    pub name: String,
}

/// A plain handler: decode the request body, fail fatally on bad input.
pub async fn greet(ctx: Context, event: Event) -> Result<(), HandlerError> {
    #[derive(Deserialize)]
    struct Request {
        body: Greeting,
    }
    // A body without a name will never decode: `?` makes the error fatal.
    let request: Request = event.data_as()?;
    if request.body.name.trim().is_empty() {
        return Err(HandlerError::fatal("the name is empty"));
    }
    tracing::info!(attempt = ctx.attempt(), key = %ctx.idempotency_key(&event), "hello, {}", request.body.name);
    Ok(())
}

/// An order as posted to `/hooks/orders`.
#[derive(Debug, Deserialize)]
pub struct Order {
    pub customer: String,
    pub total_cents: u64,
}

/// A stateful handler: keeps a running total per customer. Events that repeat an
/// idempotency key are counted once, which is how handlers make at-least-once
/// delivery harmless.
#[derive(Default)]
pub struct OrderTotals {
    state: Mutex<Totals>,
}

#[derive(Default)]
struct Totals {
    by_customer: HashMap<String, u64>,
    seen: std::collections::HashSet<String>,
}

impl OrderTotals {
    /// The total so far for `customer`, in cents.
    pub fn total(&self, customer: &str) -> u64 {
        self.state
            .lock()
            .expect("totals lock")
            .by_customer
            .get(customer)
            .copied()
            .unwrap_or(0)
    }

    fn add(&self, ctx: &Context, event: &Event) -> Result<(), HandlerError> {
        #[derive(Deserialize)]
        struct Request {
            body: Order,
        }
        let order = event.data_as::<Request>()?.body;
        if order.total_cents == 0 {
            return Err(HandlerError::fatal("an order of 0 cents is not an order"));
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| HandlerError::retryable("totals lock poisoned"))?;
        if state.seen.insert(ctx.idempotency_key(event)) {
            *state.by_customer.entry(order.customer).or_default() += order.total_cents;
        }
        Ok(())
    }
}

impl Handler for OrderTotals {
    fn handle<'a>(&'a self, ctx: Context, event: Event) -> HandlerFuture<'a> {
        Box::pin(async move { self.add(&ctx, &event) })
    }
}
