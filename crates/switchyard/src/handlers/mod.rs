//! The built-in handlers that `triggers.yaml` can name without any Rust: `webhook`,
//! `command` and `log`.
//!
//! Each built-in lives in its own file and turns its config block
//! (`switchyard_core::config::{WebhookHandler, CommandHandler, LogHandler}`) into a
//! [`Handler`](crate::Handler) with [`build`]. Adding a built-in takes one new file
//! here plus one arm in [`build`]'s match.
//!
//! What does not belong here: retry policy, timeouts and panic catching. Those wrap
//! every handler alike and live in the dispatcher; a built-in only says, per failure,
//! whether trying again could help.

mod command;
mod log;
mod webhook;

use std::sync::Arc;

use switchyard_core::config::BuiltinHandler;

pub use self::command::CommandHandler;
pub use self::log::LogHandler;
pub use self::webhook::WebhookHandler;

/// Turns a built-in handler's config into a runnable handler.
///
/// This is the `build` phase: it runs after `validate` and may fail on values that
/// only make sense to the handler itself, such as a URL that does not parse or a
/// signing secret that is not a `whsec_` key. It does no network I/O.
pub fn build(spec: &BuiltinHandler) -> Result<Arc<dyn crate::Handler>, BuildError> {
    Ok(match spec {
        BuiltinHandler::Webhook(config) => Arc::new(WebhookHandler::new(config)?),
        BuiltinHandler::Command(config) => Arc::new(CommandHandler::new(config)?),
        BuiltinHandler::Log(config) => Arc::new(LogHandler::new(config)),
    })
}

/// Why a built-in handler could not be built from its config.
///
/// Messages name the offending setting but never contain a secret: not the signing
/// key, not a header value, not the password in a URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `webhook.url` does not parse.
    #[error("webhook url {url} is not a valid URL: {reason}")]
    InvalidUrl {
        /// The URL as written, with any user info replaced by `***`.
        url: String,
        /// What the URL parser objected to; it never quotes the URL.
        reason: String,
    },
    /// `webhook.url` parses but is not `http` or `https`.
    #[error("webhook url {url} must start with http:// or https://")]
    UnsupportedScheme { url: String },
    /// `webhook.signing_secret` is not a Standard Webhooks secret.
    #[error(
        "webhook signing_secret is not a Standard Webhooks secret: {reason} (expected whsec_ followed by a base64 key)"
    )]
    InvalidSigningSecret { reason: &'static str },
    /// A `webhook.headers` entry is not a valid HTTP header. The value is not shown.
    #[error("webhook header {name:?} is invalid: {reason}")]
    InvalidHeader { name: String, reason: &'static str },
    /// The HTTP client could not be set up (for example, no TLS roots).
    #[error("could not set up the webhook HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// `command.program` is empty.
    #[error("command program is empty")]
    EmptyProgram,
    /// A `command.env` entry cannot name an environment variable.
    #[error(
        "command env entry {name:?} is not an environment variable name (it is empty or contains = or NUL)"
    )]
    InvalidEnvName { name: String },
}

/// A [`Context`](crate::Context) for unit tests of handlers: attempt 1, a deadline a
/// minute away, a fresh cancellation token.
#[cfg(test)]
pub(crate) fn test_context(trigger: &str) -> crate::Context {
    crate::Context {
        trigger: Arc::from(trigger),
        source: Arc::from("test"),
        delivery_id: 1,
        attempt: 1,
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        cancellation: tokio_util::sync::CancellationToken::new(),
        span: tracing::Span::none(),
        resources: Arc::new(crate::handler::Resources::default()),
        output: crate::handler::Output::default(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use switchyard_core::HumanDuration;
    use switchyard_core::config::{self, Secret};

    use super::*;

    fn webhook(url: &str, secret: Option<&str>) -> BuiltinHandler {
        BuiltinHandler::Webhook(config::WebhookHandler {
            url: url.to_owned(),
            signing_secret: secret.map(Secret::new),
            headers: BTreeMap::new(),
            timeout: HumanDuration::from_secs(1),
            mode: config::WebhookMode::Structured,
        })
    }

    #[test]
    fn builds_every_builtin() {
        assert!(build(&webhook("http://127.0.0.1:1/hook", None)).is_ok());
        let command = BuiltinHandler::Command(config::CommandHandler {
            program: "true".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            retry_exit_codes: vec![75],
            working_dir: None,
        });
        assert!(build(&command).is_ok());
        assert!(build(&BuiltinHandler::Log(config::LogHandler::default())).is_ok());
    }

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let err = build(&webhook("http://alice:hunter2@[::1", None))
            .err()
            .expect("invalid URL");
        let message = err.to_string();
        assert!(matches!(err, BuildError::InvalidUrl { .. }), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        let err = build(&webhook("ftp://alice:hunter2@example.com/", None))
            .err()
            .expect("ftp");
        let message = err.to_string();
        assert!(
            matches!(err, BuildError::UnsupportedScheme { .. }),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn a_bad_secret_is_reported_without_its_value() {
        for secret in ["whsec_not*base64!", "whsec_", "hunter2"] {
            let err = build(&webhook("http://127.0.0.1:1/", Some(secret)))
                .err()
                .expect(secret);
            let message = err.to_string();
            assert!(
                matches!(err, BuildError::InvalidSigningSecret { .. }),
                "{message}"
            );
            let key = secret.trim_start_matches("whsec_");
            assert!(key.is_empty() || !message.contains(key), "{message}");
        }
    }
}
