//! Switchyard's model: the event envelope, the configuration, filters and the retry
//! policy.
//!
//! Everything here is pure: no I/O, no clocks except where a caller passes one in, no
//! randomness except through an injected RNG. The store, the sources and the dispatcher
//! live in other crates and build on these types.

pub mod cloudevents;
pub mod config;
pub mod duration;
pub mod envelope;
pub mod filter;
pub mod path;
pub mod redact;
pub mod retry;
pub mod schedule;

pub use cloudevents::CloudEventError;
pub use duration::HumanDuration;
pub use envelope::Event;
pub use filter::{Failure, Filter, Verdict};
pub use path::FieldPath;
pub use retry::{Backoff, Jitter, RetryPolicy};
