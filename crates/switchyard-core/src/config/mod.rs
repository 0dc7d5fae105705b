//! `triggers.yaml`: typed structs, loading with environment interpolation, and the
//! pure validation that `switchyard validate` runs.
//!
//! Loading is two-phase, as the rest of the engine expects:
//! 1. [`Config::parse`] turns text into typed structs. It deserializes each section,
//!    source and trigger on its own, so one bad entry does not hide the others.
//! 2. [`Config::validate`] checks references across the file (sources, handlers, HTTP
//!    paths). It does no I/O.
//!
//! Every problem from both phases is a [`ConfigError`] carrying its YAML path.

mod handler;
mod interpolate;
mod retention;
mod secret;
mod secrets;
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;

pub use handler::{
    BuiltinHandler, CommandHandler, HandlerSpec, LogHandler, WebhookHandler, WebhookMode,
};
pub use interpolate::{Environment, PlaceholderEnv, ProcessEnv, interpolate};
pub use retention::{RetainedTable, RetentionConfig, RetentionPeriod, SourceRetention};
pub use secret::Secret;
pub use source::{
    ByteSize, CronSource, HmacAlgorithm, HmacVerify, HttpSource, ObjectChange, S3EventFilter,
    S3Mode, S3Polling, S3Source, SignatureEncoding, SourceConfig, Verify,
};

pub use crate::redact::redact_url;
use crate::{FieldPath, Filter, HumanDuration, RetryPolicy};

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the event log and the queue live: `sqlite://PATH` or `postgres://...`.
    pub store: String,
    pub queue: QueueConfig,
    pub http: HttpConfig,
    pub dispatcher: DispatcherConfig,
    pub retention: RetentionConfig,
    pub sources: BTreeMap<String, SourceConfig>,
    pub triggers: BTreeMap<String, TriggerConfig>,
}

/// `queue:` — what carries events from ingress to the dispatcher.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum QueueConfig {
    /// The store's own `deliveries` table (the default).
    #[default]
    Store,
}

/// `http:` — the one listener for HTTP sources, health, metrics and the admin API.
///
/// The limits bound what slow, idle and hostile clients can hold: a connection lives
/// only while it sends a request head within `header_timeout` and each body within
/// `body_timeout`; at most `max_connections` are open; and on shutdown none outlives
/// `shutdown_grace`. The memory requests hold is bounded by `max_connections` times
/// the largest source `body_limit` plus the listener's read buffer (about 400 KiB).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The address to bind, an IP literal and a port (`0` picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// When set, `/api/` requires `Authorization: Bearer <admin_token>`. When not set,
    /// `/api/` answers only loopback clients that name a loopback `Host`.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// How long a client has to send a whole request head, counted from when the
    /// server starts waiting for it: from the connection's accept for the first
    /// request, and from the end of the previous response on a keep-alive
    /// connection. So this is also how long an idle keep-alive connection stays open.
    /// When it runs out the connection is closed without an answer.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// How long an HTTP source waits for a request's whole body, counted from when
    /// its head has been read. When it runs out the request is answered 408 and no
    /// event is recorded.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
    /// Connections open at once. When this many are open, the listener accepts no
    /// more until one closes; new clients wait in the kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// On shutdown, how long requests in progress may take to finish before their
    /// connections are dropped. Idle connections close at once.
    #[serde(default = "default_http_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_body_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_max_connections() -> u32 {
    1024
}
fn default_http_shutdown_grace() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_token: None,
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            max_connections: default_max_connections(),
            shutdown_grace: default_http_shutdown_grace(),
        }
    }
}

/// `dispatcher:` — how this process claims and runs deliveries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Deliveries running at once in this process, across all triggers.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Deliveries this process (and each trigger in it) may hold claimed beyond those
    /// running, waiting for a slot, so that handler slots do not sit idle through a
    /// claim's round trip. `0` claims only what can start at once.
    #[serde(default = "default_prefetch")]
    pub prefetch: u32,
    /// How long a claim is held without a heartbeat before another process may take
    /// the delivery over.
    #[serde(default = "default_lease")]
    pub lease: HumanDuration,
    /// The safety-net poll when no wake-up arrives.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// On SIGTERM, how long in-flight deliveries may take to finish.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
}

fn default_concurrency() -> u32 {
    64
}
fn default_prefetch() -> u32 {
    64
}
fn default_lease() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_poll_interval() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_shutdown_grace() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            prefetch: default_prefetch(),
            lease: default_lease(),
            poll_interval: default_poll_interval(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// `triggers.NAME:` — route matching events from a source to a handler.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// The name of a source under `sources:`.
    pub source: String,
    /// Only events passing this filter are delivered. Without it, every event is.
    #[serde(default)]
    pub filter: Option<Filter>,
    pub handler: HandlerSpec,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Limit for one attempt; a handler still running then is cancelled and the
    /// attempt counts as a retryable failure.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Deliveries of this trigger running at once in one process.
    #[serde(default = "default_trigger_concurrency")]
    pub concurrency: u32,
    /// Deliver events with the same key one at a time, in order.
    #[serde(default)]
    pub ordering: Option<Ordering>,
    /// A disabled trigger gets no new deliveries.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_trigger_concurrency() -> u32 {
    16
}
fn default_enabled() -> bool {
    true
}

/// `ordering:` — per-key ordering.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ordering {
    /// Where the key is read, e.g. `data.customer_id`, `subject` or `partitionkey`.
    /// Events without a value there are not ordered.
    pub key: FieldPath,
}

/// What [`Config::parse_partial`] could read.
struct Partial {
    config: Config,
    errors: Vec<ConfigError>,
    unparsed_sources: BTreeSet<String>,
    /// Paths of values whose text is not known (see [`interpolate::interpolate_tree`]).
    unchecked: BTreeSet<String>,
}

impl Partial {
    /// Adds `found` to the errors, less those about a value whose text is not known:
    /// its missing variable is reported already, or it holds a placeholder.
    fn add(&mut self, found: Vec<ConfigError>) {
        let unchecked = &self.unchecked;
        self.errors.extend(found.into_iter().filter(|error| {
            !unchecked
                .iter()
                .any(|path| error.path == *path || error.path.starts_with(&format!("{path}.")))
        }));
    }
}

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted YAML path, such as `triggers.thumbnail.retry.initial`. Empty for the
    /// file as a whole.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Paths that the listener serves itself; HTTP sources may not take them.
pub const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/api"];

const DEFAULT_STORE: &str = "sqlite://switchyard.db";

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Config {
    /// Parses YAML text, interpolating variables from `env`. Collects every problem
    /// it can find rather than stopping at the first.
    pub fn parse(text: &str, env: &dyn Environment) -> Result<Self, ConfigErrors> {
        let partial = Self::parse_partial(text, env)?;
        if partial.errors.is_empty() {
            Ok(partial.config)
        } else {
            Err(ConfigErrors(partial.errors))
        }
    }

    /// Parses what it can: the entries that deserialize, the errors of those that do
    /// not, and the names of sources that failed (so that `load` does not also call
    /// them unknown). Fails outright only when the text is not a YAML map.
    fn parse_partial(text: &str, env: &dyn Environment) -> Result<Partial, ConfigErrors> {
        let mut root: Value = serde_norway::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError::new("", format!("not valid YAML: {e}"))])
        })?;
        if root.is_null() {
            root = Value::Mapping(Default::default());
        }
        let mut errors = Vec::new();
        let mut unchecked = BTreeSet::new();
        interpolate::interpolate_tree(&mut root, "", env, &mut errors, &mut unchecked);
        let interpolation_errors = errors.len();
        let Value::Mapping(top) = root else {
            errors.push(ConfigError::new(
                "",
                "the file must be a map with sources and triggers",
            ));
            return Err(ConfigErrors(errors));
        };

        let mut unparsed_sources = BTreeSet::new();
        let mut source_retention = BTreeMap::new();
        let mut config = Config {
            store: DEFAULT_STORE.to_owned(),
            queue: QueueConfig::default(),
            http: HttpConfig::default(),
            dispatcher: DispatcherConfig::default(),
            retention: RetentionConfig::default(),
            sources: BTreeMap::new(),
            triggers: BTreeMap::new(),
        };
        for (key, value) in top {
            let Some(key) = key.as_str().map(str::to_owned) else {
                errors.push(ConfigError::new(
                    "",
                    format!("keys must be strings, found {key:?}"),
                ));
                continue;
            };
            match key.as_str() {
                "store" => set(&mut config.store, section(&key, value, &mut errors)),
                "queue" => set(&mut config.queue, section(&key, value, &mut errors)),
                "http" => set(&mut config.http, section(&key, value, &mut errors)),
                "dispatcher" => set(&mut config.dispatcher, section(&key, value, &mut errors)),
                "retention" => set(&mut config.retention, section(&key, value, &mut errors)),
                "sources" => {
                    let value = take_source_retention(value, &mut source_retention, &mut errors);
                    (config.sources, unparsed_sources) = entries(&key, value, &mut errors);
                }
                "triggers" => config.triggers = entries(&key, value, &mut errors).0,
                other => errors.push(ConfigError::new(
                    other,
                    "unknown field, expected one of store, queue, http, dispatcher, retention, sources, triggers",
                )),
            }
        }
        config.retention.sources = source_retention;
        let found = errors.split_off(interpolation_errors);
        let mut partial = Partial {
            config,
            errors,
            unparsed_sources,
            unchecked,
        };
        partial.add(found);
        Ok(partial)
    }

    /// Checks what the types alone cannot: references between sections, unsupported
    /// kinds, duplicate paths and value ranges. `is_registered` says whether a handler
    /// name was registered in Rust.
    pub fn validate(&self, is_registered: &dyn Fn(&str) -> bool) -> Result<(), ConfigErrors> {
        let errors = self.check(is_registered, &BTreeSet::new());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The checks of [`validate`](Self::validate). Triggers may name a source in
    /// `unparsed_sources`: it exists, and its own error is reported already.
    fn check(
        &self,
        is_registered: &dyn Fn(&str) -> bool,
        unparsed_sources: &BTreeSet<String>,
    ) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(ConfigError::new(path, message));

        if !(self.store.starts_with("sqlite:")
            || self.store.starts_with("postgres://")
            || self.store.starts_with("postgresql://"))
        {
            err(
                "store".into(),
                format!(
                    "{:?} is not a store URL (use sqlite://PATH or postgres://...)",
                    redact_url(&self.store)
                ),
            );
        }
        if self.http.max_connections == 0 {
            err("http.max_connections".into(), "must be at least 1".into());
        }
        for (key, timeout) in [
            ("header_timeout", self.http.header_timeout),
            ("body_timeout", self.http.body_timeout),
        ] {
            if timeout.get().is_zero() {
                err(format!("http.{key}"), "must be longer than 0s".into());
            }
        }
        if self.dispatcher.concurrency == 0 {
            err("dispatcher.concurrency".into(), "must be at least 1".into());
        }
        if self.dispatcher.lease < HumanDuration::from_secs(1) {
            err(
                "dispatcher.lease".into(),
                format!("{} is too short (at least 1s)", self.dispatcher.lease),
            );
        }
        if self.dispatcher.poll_interval < HumanDuration::from_millis(10) {
            err(
                "dispatcher.poll_interval".into(),
                format!(
                    "{} is too short (at least 10ms)",
                    self.dispatcher.poll_interval
                ),
            );
        }

        if self.retention.interval < HumanDuration::from_secs(1) {
            err(
                "retention.interval".into(),
                format!("{} is too short (at least 1s)", self.retention.interval),
            );
        }

        let mut shared = source::SharedChecks::default();
        for (name, source) in &self.sources {
            let at = format!("sources.{name}");
            check_name(&at, name, &mut err);
            let kind_at = format!("{at}.{}", source.kind());
            match source.settings() {
                Some(settings) => settings.check(name, &kind_at, &mut shared, &mut err),
                None => err(
                    kind_at,
                    format!("source kind {:?} is not supported yet", source.kind()),
                ),
            }
        }

        for (name, trigger) in &self.triggers {
            let at = format!("triggers.{name}");
            check_name(&at, name, &mut err);
            if !self.sources.contains_key(&trigger.source)
                && !unparsed_sources.contains(&trigger.source)
            {
                let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
                err(
                    format!("{at}.source"),
                    format!(
                        "unknown source {:?} (defined: {})",
                        trigger.source,
                        list(&known)
                    ),
                );
            }
            if let HandlerSpec::Registered(handler) = &trigger.handler
                && !is_registered(handler)
            {
                err(
                    format!("{at}.handler"),
                    format!(
                        "unknown handler {handler:?}: register it in main.rs with Engine::handler, or use a built-in (webhook, command, log)"
                    ),
                );
            }
            let retry = &trigger.retry;
            if retry.max_attempts == 0 {
                err(
                    format!("{at}.retry.max_attempts"),
                    "must be at least 1".into(),
                );
            }
            if !(retry.multiplier >= 1.0 && retry.multiplier.is_finite()) {
                err(
                    format!("{at}.retry.multiplier"),
                    format!("{} must be a number of at least 1", retry.multiplier),
                );
            }
            if retry.initial > retry.max {
                err(
                    format!("{at}.retry.initial"),
                    format!("{} is longer than retry.max ({})", retry.initial, retry.max),
                );
            }
            if trigger.concurrency == 0 {
                err(format!("{at}.concurrency"), "must be at least 1".into());
            }
            if trigger.timeout.get().is_zero() {
                err(format!("{at}.timeout"), "must be longer than 0s".into());
            }
        }
        errors
    }

    /// Parses and validates in one step.
    pub fn load(
        text: &str,
        env: &dyn Environment,
        is_registered: &dyn Fn(&str) -> bool,
    ) -> Result<Self, ConfigErrors> {
        let mut partial = Self::parse_partial(text, env)?;
        let found = partial
            .config
            .check(is_registered, &partial.unparsed_sources);
        partial.add(found);
        if partial.errors.is_empty() {
            Ok(partial.config)
        } else {
            Err(ConfigErrors(partial.errors))
        }
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn check_name(at: &str, name: &str, err: &mut impl FnMut(String, String)) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        err(
            at.to_owned(),
            format!("{name:?} is not a valid name (use letters, digits, _ and -)"),
        );
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// Deserializes one value, turning each failure into an error at its precise path.
///
/// serde stops at the first value it cannot take. To report the others too, the value
/// at fault is removed (so that its default, if any, applies) and the rest deserialized
/// again, until it succeeds or fails on the whole value or on one that encloses a value
/// already removed (an error that removal caused).
fn section<T: DeserializeOwned>(
    path: &str,
    value: Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    // serde_norway's own `Value` only reads enums from YAML tags; its JSON form reads
    // them from one-key maps, which is how users write them.
    let mut value = match serde_json::to_value(value) {
        Ok(value) => value,
        Err(e) => {
            errors.push(ConfigError::new(path, e.to_string()));
            return None;
        }
    };
    let mut removed: Vec<String> = Vec::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) => return removed.is_empty().then_some(parsed),
            Err(error) => error,
        };
        let inner = error.path().to_string();
        let caused_by_removal = removed
            .iter()
            .any(|r| *r == inner || inner == "." || r.starts_with(&format!("{inner}.")));
        if caused_by_removal {
            return None;
        }
        let full = if inner == "." {
            path.to_owned()
        } else {
            join(path, &inner)
        };
        errors.push(ConfigError::new(full, error.inner().to_string()));
        if inner == "." || !remove_at(&mut value, error.path()) {
            return None;
        }
        removed.push(inner);
    }
}

/// Removes the value at `path` from `root`; false if there is none, or it is an item
/// of a list.
fn remove_at(root: &mut serde_json::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;

    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = root;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Seq { index }, serde_json::Value::Array(items)) => items.get_mut(*index),
            (
                Segment::Map { key } | Segment::Enum { variant: key },
                serde_json::Value::Object(map),
            ) => map.get_mut(key),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    // An item of a list stays: removing it would renumber the items after it, and
    // their errors would name the wrong index.
    match (last, at) {
        (Segment::Map { key } | Segment::Enum { variant: key }, serde_json::Value::Object(map)) => {
            map.remove(key).is_some()
        }
        _ => false,
    }
}

/// Takes the `retention` key out of each source under `sources:` (`value`), parsing
/// it into `overrides` by source name, and returns the sources without it: the rest of
/// a source is its kind alone.
fn take_source_retention(
    mut value: Value,
    overrides: &mut BTreeMap<String, SourceRetention>,
    errors: &mut Vec<ConfigError>,
) -> Value {
    let Value::Mapping(sources) = &mut value else {
        return value;
    };
    for (name, source) in sources.iter_mut() {
        let (Some(name), Value::Mapping(source)) = (name.as_str(), source) else {
            continue;
        };
        if let Some(retention) = source.remove("retention")
            && let Some(retention) =
                section(&format!("sources.{name}.retention"), retention, errors)
        {
            overrides.insert(name.to_owned(), retention);
        }
    }
    value
}

/// Deserializes a map of named entries, each on its own.
/// Returns the entries that deserialized and the names of those that did not.
fn entries<T: DeserializeOwned>(
    path: &str,
    value: Value,
    errors: &mut Vec<ConfigError>,
) -> (BTreeMap<String, T>, BTreeSet<String>) {
    let mut out = BTreeMap::new();
    let mut failed = BTreeSet::new();
    match value {
        Value::Null => {}
        Value::Mapping(map) => {
            for (key, value) in map {
                let Some(name) = key.as_str().map(str::to_owned) else {
                    errors.push(ConfigError::new(
                        path,
                        format!("names must be strings, found {key:?}"),
                    ));
                    continue;
                };
                match section(&join(path, &name), value, errors) {
                    Some(entry) => {
                        out.insert(name, entry);
                    }
                    None => {
                        failed.insert(name);
                    }
                }
            }
        }
        _ => errors.push(ConfigError::new(
            path,
            "expected a map of names to settings",
        )),
    }
    (out, failed)
}

#[cfg(test)]
mod tests;
