//! What users write under `triggers.NAME.handler`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::Secret;
use crate::HumanDuration;

/// Which handler runs a trigger's deliveries.
///
/// A plain string names a handler registered in Rust (`handler: resize_image`); `log`
/// on its own is the built-in log handler. A map with one key picks a built-in with
/// settings (`handler: { webhook: { url: ... } }`).
#[derive(Clone, Debug)]
pub enum HandlerSpec {
    /// A handler registered with `Engine::handler(name, ...)`.
    Registered(String),
    Builtin(BuiltinHandler),
}

/// The built-in handlers and their settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BuiltinHandler {
    /// POST the event as a structured CloudEvent.
    Webhook(WebhookHandler),
    /// Run a program with the event JSON on stdin.
    Command(CommandHandler),
    /// Print the event to the log.
    Log(LogHandler),
}

impl HandlerSpec {
    /// A short name for tables and logs: the registered name or the built-in kind.
    pub fn name(&self) -> &str {
        match self {
            Self::Registered(name) => name,
            Self::Builtin(BuiltinHandler::Webhook(_)) => "webhook",
            Self::Builtin(BuiltinHandler::Command(_)) => "command",
            Self::Builtin(BuiltinHandler::Log(_)) => "log",
        }
    }
}

impl<'de> Deserialize<'de> for HandlerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match value {
            serde_json::Value::String(name) if name == "log" => {
                Ok(Self::Builtin(BuiltinHandler::Log(LogHandler::default())))
            }
            serde_json::Value::String(name) => Ok(Self::Registered(name)),
            other => BuiltinHandler::deserialize(other)
                .map(Self::Builtin)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `webhook:` — POST each event to `url`. 2xx succeeds; 408, 409, 429, 5xx and network
/// errors are retried; other statuses are fatal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookHandler {
    pub url: String,
    /// Sign requests with Standard Webhooks headers using this `whsec_...` secret.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout; the trigger's `timeout` still applies on top.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,
    /// How the event is put into the request: the CloudEvents HTTP binding's
    /// structured mode (the default) or binary mode.
    #[serde(default)]
    pub mode: WebhookMode,
}

/// The CloudEvents HTTP content mode a webhook sends in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookMode {
    /// The whole event as JSON, `content-type: application/cloudevents+json`.
    #[default]
    Structured,
    /// The payload as the body, with `content-type` from `datacontenttype`; every
    /// other attribute a `ce-*` header.
    Binary,
}

fn default_webhook_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

/// `command:` — run `program` with `args`; the event JSON is on stdin. Exit code 0
/// succeeds, 75 (`EX_TEMPFAIL`) and death by signal are retried, anything else is
/// fatal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandHandler {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables passed through from Switchyard's own environment. No other
    /// variable reaches the program except `PATH`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Exit codes that mean "try again later". Defaults to `[75]`.
    #[serde(default = "default_retry_codes")]
    pub retry_exit_codes: Vec<i32>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

fn default_retry_codes() -> Vec<i32> {
    vec![75]
}

/// `log:` — write the event to Switchyard's log at info level.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHandler {
    /// Include `data` in the log line. On by default.
    #[serde(default = "default_true")]
    pub data: bool,
}

impl Default for LogHandler {
    fn default() -> Self {
        Self { data: true }
    }
}

fn default_true() -> bool {
    true
}
