//! The handler SDK: what plugin authors implement and what they receive.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Event;

/// The future a handler returns.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// Something that handles deliveries. Implement it on a struct to keep state (clients,
/// pools) between deliveries; for a plain async function use [`handler_fn`].
///
/// A handler may be called concurrently for different deliveries, up to the trigger's
/// `concurrency`. It should stop promptly when `ctx.cancellation()` fires; if it does
/// not, it is dropped at the deadline and the attempt counts as a timeout.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, ctx: Context, event: Event) -> HandlerFuture<'a>;
}

/// Wraps an async function as a [`Handler`].
///
/// ```no_run
/// use switchyard::{Context, Event, HandlerError, handler_fn};
///
/// async fn greet(ctx: Context, event: Event) -> Result<(), HandlerError> {
///     tracing::info!(attempt = ctx.attempt(), id = %event.id, "hello");
///     Ok(())
/// }
/// let handler = handler_fn(greet);
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Context, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    FnHandler(f)
}

/// A [`Handler`] made from a function by [`handler_fn`].
pub struct FnHandler<F>(F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Context, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle<'a>(&'a self, ctx: Context, event: Event) -> HandlerFuture<'a> {
        Box::pin((self.0)(ctx, event))
    }
}

/// Why an attempt failed, and whether trying again could help.
///
/// The classification is made where the error happens, as a type: never by matching
/// message text.
#[derive(Debug)]
pub struct HandlerError {
    kind: ErrorKind,
    retry_after: Option<Duration>,
    source: Box<dyn std::error::Error + Send + Sync>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient: retry according to the trigger's policy.
    Retryable,
    /// Permanent: dead-letter now.
    Fatal,
}

impl HandlerError {
    /// A transient failure; the delivery is retried per the trigger's policy.
    pub fn retryable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            retry_after: None,
            source: error.into(),
        }
    }

    /// A permanent failure; the delivery is dead-lettered without further attempts.
    pub fn fatal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            retry_after: None,
            source: error.into(),
        }
    }

    /// A transient failure whose next attempt should wait `delay` (as an HTTP
    /// `Retry-After` asks). The trigger's `retry.max` still caps it.
    pub fn retry_after(
        delay: Duration,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            retry_after: Some(delay),
            source: error.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_fatal(&self) -> bool {
        self.kind == ErrorKind::Fatal
    }

    pub fn retry_after_delay(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)?;
        let mut cause = self.source.source();
        while let Some(inner) = cause {
            write!(f, ": {inner}")?;
            cause = inner.source();
        }
        Ok(())
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A payload that does not decode will not decode next time either: fatal.
impl From<switchyard_core::envelope::DataError> for HandlerError {
    fn from(error: switchyard_core::envelope::DataError) -> Self {
        Self::fatal(error)
    }
}

/// What a handler knows about the delivery it is running.
#[derive(Clone, Debug)]
pub struct Context {
    pub(crate) trigger: Arc<str>,
    /// The configured source of the delivery's event.
    pub(crate) source: Arc<str>,
    pub(crate) delivery_id: i64,
    pub(crate) attempt: u32,
    pub(crate) deadline: Instant,
    pub(crate) cancellation: CancellationToken,
    pub(crate) span: tracing::Span,
    pub(crate) resources: Arc<Resources>,
    pub(crate) output: Output,
}

/// The most of an attempt's output [`Context::set_output`] keeps, in bytes.
pub const OUTPUT_LIMIT: usize = 4096;

/// Where a handler leaves what it said in an attempt; shared by the clones of one
/// attempt's [`Context`] and read by the dispatcher when the attempt ends.
#[derive(Clone, Debug, Default)]
pub(crate) struct Output(Arc<std::sync::Mutex<Option<String>>>);

impl Output {
    fn set(&self, text: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
    }

    /// What the handler set, if anything; leaves nothing behind.
    pub(crate) fn take(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Context {
    /// The trigger this delivery belongs to.
    pub fn trigger(&self) -> &str {
        &self.trigger
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delivery's row id in the store.
    pub fn delivery_id(&self) -> i64 {
        self.delivery_id
    }

    /// `EVENT_ID:TRIGGER`: the same for every attempt and every redelivery of this
    /// event to this trigger. Use it to make duplicates harmless.
    pub fn idempotency_key(&self, event: &Event) -> String {
        idempotency_key(event.switchyard_id, &self.trigger)
    }

    /// When the attempt times out. After it the handler's future is dropped.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Fires at the deadline, and when shutdown's grace period (`shutdown_grace`) runs
    /// out with the handler still running. Long handlers should watch it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }

    /// The tracing span of this attempt; the handler already runs inside it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records what the handler said in this attempt, for `switchyard event ID` and
    /// the event log's `attempts.output`: a response status, a summary, the tail of a
    /// log. It is kept whatever the attempt's outcome. A later call replaces an earlier
    /// one. Text past [`OUTPUT_LIMIT`] bytes is cut, and configured secrets are
    /// redacted before it is stored.
    pub fn set_output(&self, output: impl Into<String>) {
        let mut output = output.into();
        if output.len() > OUTPUT_LIMIT {
            let mut end = OUTPUT_LIMIT - '…'.len_utf8();
            while !output.is_char_boundary(end) {
                end -= 1;
            }
            output.truncate(end);
            output.push('…');
        }
        self.output.set(output);
    }

    /// A shared resource the engine was given with `Engine::resource`, by type.
    pub fn resource<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.resources.get::<T>()
    }

    /// An S3 client for the `s3` source this delivery's event came from, set up with
    /// that source's region, endpoint and credentials (including the role it assumes),
    /// so a handler can read or write the bucket's objects without configuring
    /// anything. The client is shared and cheap to clone.
    ///
    /// Fails fatally when the event's source is not an `s3` source: retrying would not
    /// change that.
    ///
    /// ```no_run
    /// # use switchyard::{Context, Event, HandlerError};
    /// #[derive(serde::Deserialize)]
    /// struct Object {
    ///     bucket: String,
    ///     key: String,
    /// }
    ///
    /// async fn log_size(ctx: Context, event: Event) -> Result<(), HandlerError> {
    ///     let object: Object = event.data_as()?;
    ///     let head = ctx.s3()?.head_object().bucket(object.bucket).key(object.key)
    ///         .send().await.map_err(HandlerError::retryable)?;
    ///     tracing::info!(size = ?head.content_length(), "object size");
    ///     Ok(())
    /// }
    /// ```
    pub fn s3(&self) -> Result<aws_sdk_s3::Client, HandlerError> {
        self.resources
            .get::<S3Clients>()
            .and_then(|clients| clients.get(&self.source))
            .ok_or_else(|| {
                HandlerError::fatal(format!(
                    "the event comes from source {:?}, which is not an s3 source",
                    self.source
                ))
            })
    }
}

/// The idempotency key of an event's delivery to a trigger.
pub fn idempotency_key(event_id: Uuid, trigger: &str) -> String {
    format!("{event_id}:{trigger}")
}

/// The S3 client of every `s3` source, by source name: what [`Context::s3`] hands to
/// handlers. The engine builds it with the `s3` sources and adds it to the resources.
#[derive(Default)]
pub(crate) struct S3Clients(HashMap<String, aws_sdk_s3::Client>);

impl S3Clients {
    pub fn insert(&mut self, source: &str, client: aws_sdk_s3::Client) {
        self.0.insert(source.to_owned(), client);
    }

    /// The client of `source`, if it is an `s3` source.
    pub fn get(&self, source: &str) -> Option<aws_sdk_s3::Client> {
        self.0.get(source).cloned()
    }
}

/// Values shared with every handler through [`Context::resource`], keyed by type.
#[derive(Default)]
pub struct Resources(HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>);

impl Resources {
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(std::any::TypeId::of::<T>(), Arc::new(value));
    }

    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0
            .get(&std::any::TypeId::of::<T>())?
            .clone()
            .downcast::<T>()
            .ok()
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources({} entries)", self.0.len())
    }
}

/// Handlers registered in Rust, by name.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl Registry {
    pub fn insert(&mut self, name: impl Into<String>, handler: impl Handler) {
        self.handlers.insert(name.into(), Arc::new(handler));
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_classification_and_chain() {
        let io = std::io::Error::other("disk full");
        let err = HandlerError::retryable(io);
        assert_eq!(err.kind(), ErrorKind::Retryable);
        assert_eq!(err.to_string(), "disk full");
        let err = HandlerError::retry_after(Duration::from_secs(3), "busy");
        assert_eq!(err.retry_after_delay(), Some(Duration::from_secs(3)));
        assert!(HandlerError::fatal("bad input").is_fatal());
    }

    #[test]
    fn resources_are_found_by_type() {
        let mut resources = Resources::default();
        resources.insert(42_u32);
        assert_eq!(resources.get::<u32>().as_deref(), Some(&42));
        assert!(resources.get::<u64>().is_none());
    }
}
