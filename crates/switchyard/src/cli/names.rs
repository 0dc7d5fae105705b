//! Names given on the command line, checked against the configuration: an unknown
//! `--source`, `--trigger` or `--type` is an error that lists the known ones, rather
//! than a filter that quietly matches nothing.

use chrono::{DateTime, Utc};
use switchyard_core::config::Config;

use super::CliError;
use crate::sources;

/// `name` is a source of `config`.
pub fn source(config: &Config, name: &str) -> Result<(), CliError> {
    if config.sources.contains_key(name) {
        return Ok(());
    }
    Err(CliError(format!(
        "unknown source {name:?} (defined: {})",
        listed(config.sources.keys().map(String::as_str))
    )))
}

/// `name` is a trigger of `config`, enabled or not.
pub fn trigger(config: &Config, name: &str) -> Result<(), CliError> {
    if config.triggers.contains_key(name) {
        return Ok(());
    }
    Err(CliError(format!(
        "unknown trigger {name:?} (defined: {})",
        listed(config.triggers.keys().map(String::as_str))
    )))
}

/// `name` is a trigger that can take new deliveries of events of `source` (of any
/// source when `None`): it exists, is enabled, and is of that source.
pub fn replay_trigger(config: &Config, name: &str, source: Option<&str>) -> Result<(), CliError> {
    trigger(config, name)?;
    let found = &config.triggers[name];
    if let Some(source) = source
        && found.source != source
    {
        return Err(CliError(format!(
            "trigger {name:?} is of source {:?}, not of {source:?}",
            found.source
        )));
    }
    if !found.enabled {
        return Err(CliError(format!(
            "trigger {name:?} is disabled (enabled: false): enable it to replay to it"
        )));
    }
    Ok(())
}

/// `ty` is a type the sources in question (`source`, or every source) can produce.
/// Only checked when each of them has a fixed set of types (its kind's
/// `event_types`): an HTTP source takes CloudEvents of any type, and a `postgres`
/// source is not built yet.
pub fn event_type(config: &Config, source: Option<&str>, ty: &str) -> Result<(), CliError> {
    let mut known: Vec<&str> = Vec::new();
    for (name, kind) in &config.sources {
        if source.is_some_and(|s| s != name) {
            continue;
        }
        match sources::kind(kind).and_then(|kind| kind.event_types()) {
            Some(types) => known.extend(types),
            None => return Ok(()),
        }
    }
    known.sort_unstable();
    known.dedup();
    if known.contains(&ty) {
        return Ok(());
    }
    let of = source.map_or_else(|| "any source".to_owned(), |s| format!("source {s:?}"));
    Err(CliError(format!(
        "{of} makes no events of type {ty:?} (its types: {})",
        listed(known)
    )))
}

/// `[since, until)` is a window forward in time.
pub fn window(since: DateTime<Utc>, until: DateTime<Utc>) -> Result<(), CliError> {
    if since < until {
        return Ok(());
    }
    Err(CliError(format!(
        "--until ({}) is not after --since ({}): the window is empty",
        until.to_rfc3339(),
        since.to_rfc3339()
    )))
}

fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
