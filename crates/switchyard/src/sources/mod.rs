//! Sources: adapters that turn the outside world into events.
//!
//! One module per kind. A source builds [`switchyard_core::Event`]s with a natural
//! dedupe key and hands them to [`crate::ingest::Ingest`], acknowledging upstream only
//! after `submit` returns.

pub mod cron;
pub mod http;

use switchyard_core::Event;
use switchyard_core::config::{Config, SourceConfig};

/// An event as `source` would label it, for `switchyard send` and the test kit: its
/// CloudEvents `source` and default `type` follow the source's kind, and `data` is
/// used as it is (an HTTP source would wrap a request body in `{"body": ...}`, so a
/// test that filters on `data.body.*` passes data of that shape).
pub fn synthetic_event(
    config: &Config,
    source: &str,
    ty: Option<String>,
    data: serde_json::Value,
) -> Result<Event, String> {
    let Some(kind) = config.sources.get(source) else {
        let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown source {source:?} (defined: {})",
            known.join(", ")
        ));
    };
    let (ce_source, default_type) = match kind {
        SourceConfig::Http(http) => (http.path.clone(), http.ty.clone()),
        other => (
            format!("{}://{source}", other.kind()),
            format!("{}.event", other.kind()),
        ),
    };
    Ok(Event::new(source, ce_source, ty.unwrap_or(default_type)).with_json(data))
}
