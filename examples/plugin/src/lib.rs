//! Example handlers: a plain async function, a stateful struct, and one that reads and
//! writes S3 objects through the client of the `s3` source its events come from.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use switchyard::aws_sdk_s3::operation::get_object::GetObjectError;
use switchyard::aws_sdk_s3::primitives::ByteStream;
use switchyard::prelude::*;

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
    info!(attempt = ctx.attempt(), key = %ctx.idempotency_key(&event), "hello, {}", request.body.name);
    // Kept with the attempt, and shown by `switchyard event ID`.
    ctx.set_output(format!("greeted {}", request.body.name));
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

/// The fields of an `s3.object.created` event's `data` that [`make_derivative`] reads.
#[derive(Debug, Deserialize)]
pub struct S3Object {
    pub bucket: String,
    /// The decoded key.
    pub key: String,
    /// Set in versioned buckets: the derivative is made of exactly this version.
    #[serde(default)]
    pub version_id: Option<String>,
}

/// Where [`make_derivative`] writes, and what it leaves alone.
pub const DERIVED_PREFIX: &str = "derived/";

/// Makes a derivative of every new object, the way a thumbnailer would: reads the
/// object through the S3 client of the source the event came from, and writes
/// [`derive`] of its bytes under `derived/` with the same key.
///
/// Objects already under `derived/` are skipped, so the handler's own writes (which the
/// bucket announces too) end there. An object deleted before it could be read is
/// skipped as well; other S3 errors are retried.
pub async fn make_derivative(ctx: Context, event: Event) -> Result<(), HandlerError> {
    let object: S3Object = event.data_as()?;
    if object.key.starts_with(DERIVED_PREFIX) {
        return Ok(());
    }
    let s3 = ctx.s3()?;
    let read = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .send()
        .await;
    let original = match read {
        Ok(original) => original,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(GetObjectError::is_no_such_key) =>
        {
            info!(key = %object.key, "the object is gone; nothing to derive");
            return Ok(());
        }
        Err(error) => return Err(HandlerError::retryable(error)),
    };
    let bytes = original
        .body
        .collect()
        .await
        .map_err(HandlerError::retryable)?
        .into_bytes();
    s3.put_object()
        .bucket(&object.bucket)
        .key(format!("{DERIVED_PREFIX}{}", object.key))
        .body(ByteStream::from(derive(&bytes)))
        .send()
        .await
        .map_err(HandlerError::retryable)?;
    info!(key = %object.key, bytes = bytes.len(), "derivative written");
    Ok(())
}

/// The derivative of an object's bytes: ASCII letters upper-cased, every other byte
/// as it is. A stand-in for resizing an image.
pub fn derive(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_uppercase()
}
