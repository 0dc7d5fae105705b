//! `s3:` — object changes in a bucket, from its event notifications or by polling.

use serde::{Deserialize, Deserializer};

use super::{Secret, SharedChecks, SourceSettings};
use crate::HumanDuration;

/// `s3:` — objects created in or removed from a bucket become `s3.object.created` and
/// `s3.object.removed` events.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Source {
    /// The bucket whose objects are watched. Notifications about other buckets are
    /// acknowledged and dropped.
    pub bucket: String,
    /// How changes are found: `notifications` (the default) receives the bucket's event
    /// notifications from `queue_url`; `{ polling: { interval: 30s } }` lists the bucket
    /// every interval instead, for S3-compatible servers without notifications.
    #[serde(default)]
    pub mode: S3Mode,
    /// The SQS queue the bucket's notifications go to, directly, through SNS or through
    /// EventBridge. Required in notifications mode, not allowed in polling mode.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub queue_url: Option<String>,
    /// How long a received message stays hidden from other receivers. Switchyard
    /// extends it while a batch is still being committed, and deletes the message once
    /// its events are committed; a process that dies holding it lets it reappear after
    /// this long. Notifications mode only.
    #[serde(default = "default_visibility_timeout")]
    pub visibility_timeout: HumanDuration,
    /// Which changes become events: `created`, `removed`, or event names such as
    /// `s3:ObjectCreated:Put` (a trailing `*` matches the rest, as in
    /// `s3:ObjectRemoved:*`). Empty, the default, means every change.
    #[serde(default)]
    pub events: Vec<S3EventFilter>,
    /// Only keys that start with this (decoded) text.
    #[serde(default)]
    pub prefix: String,
    /// Only keys that end with this (decoded) text, such as `.jpg`.
    #[serde(default)]
    pub suffix: String,
    /// The AWS region of the bucket and the queue.
    #[serde(default = "default_region")]
    pub region: String,
    /// The URL of an S3-compatible server (MinIO, moto, ...) serving S3, SQS and STS
    /// instead of AWS. S3 requests then use path-style addressing. Empty means AWS.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub endpoint: Option<String>,
    /// An access key id, together with `secret_access_key`. Without them the standard
    /// AWS chain is used: environment, profile files, web identity, container or
    /// instance metadata.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// The secret access key that goes with `access_key_id`; typically `${ENV}`.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// A role to assume with STS on top of those credentials, such as
    /// `arn:aws:iam::123456789012:role/uploads-reader`. Empty means none.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub role_arn: Option<String>,
}

/// `mode:` — how an `s3` source finds changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum S3Mode {
    /// Long-poll `queue_url` for the bucket's event notifications.
    #[default]
    Notifications,
    /// List the bucket (under `prefix`) and compare with the previous listing.
    Polling(S3Polling),
}

/// `mode: { polling: ... }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Polling {
    /// How often the bucket is listed. Each listing reads every key under `prefix`.
    #[serde(default = "default_poll_interval")]
    pub interval: HumanDuration,
}

/// Whether an object appeared (or changed) or went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectChange {
    Created,
    Removed,
}

impl ObjectChange {
    /// The event `type` of this change.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Created => "s3.object.created",
            Self::Removed => "s3.object.removed",
        }
    }
}

/// One entry of `events:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3EventFilter {
    /// Every `s3.object.created` event.
    Created,
    /// Every `s3.object.removed` event.
    Removed,
    /// Events whose original name matches, without the `s3:` prefix: exactly, or by
    /// prefix when the pattern ends with `*`.
    Name(String),
}

impl S3EventFilter {
    /// Whether a change of this kind, with this original event name, passes.
    pub fn matches(&self, change: ObjectChange, event_name: &str) -> bool {
        match self {
            Self::Created => change == ObjectChange::Created,
            Self::Removed => change == ObjectChange::Removed,
            Self::Name(pattern) => {
                let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
                match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == pattern,
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for S3EventFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "created" => Ok(Self::Created),
            "removed" => Ok(Self::Removed),
            name if name.contains(':') && !name.ends_with(':') => Ok(Self::Name(
                name.strip_prefix("s3:").unwrap_or(name).to_owned(),
            )),
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is not an S3 event (use created, removed, or a name such as s3:ObjectCreated:Put)"
            ))),
        }
    }
}

impl S3Source {
    /// Whether a change to `key` (decoded) with this event name passes `prefix`,
    /// `suffix` and `events`.
    pub fn wants(&self, change: ObjectChange, event_name: &str, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && key.ends_with(&self.suffix)
            && (self.events.is_empty() || self.events.iter().any(|f| f.matches(change, event_name)))
    }
}

impl SourceSettings for S3Source {
    fn check(
        &self,
        _name: &str,
        at: &str,
        _shared: &mut SharedChecks,
        err: &mut dyn FnMut(String, String),
    ) {
        if self.bucket.trim().is_empty() {
            err(format!("{at}.bucket"), "is empty".into());
        }
        if self.region.trim().is_empty() {
            err(format!("{at}.region"), "is empty".into());
        }
        match &self.mode {
            S3Mode::Notifications => match &self.queue_url {
                None => err(
                    format!("{at}.queue_url"),
                    "is required in notifications mode (or use mode: { polling: { interval: 30s } })"
                        .into(),
                ),
                Some(url) if !is_http_url(url) => err(
                    format!("{at}.queue_url"),
                    format!("{url:?} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)"),
                ),
                Some(_) => {}
            },
            S3Mode::Polling(polling) => {
                if self.queue_url.is_some() {
                    err(
                        format!("{at}.queue_url"),
                        "is not used in polling mode; remove it".into(),
                    );
                }
                if polling.interval < HumanDuration::from_millis(100) {
                    err(
                        format!("{at}.mode.polling.interval"),
                        format!("{} is too short (at least 100ms)", polling.interval),
                    );
                }
            }
        }
        if self.visibility_timeout < MIN_VISIBILITY || self.visibility_timeout > MAX_VISIBILITY {
            err(
                format!("{at}.visibility_timeout"),
                format!(
                    "{} is out of range ({MIN_VISIBILITY} to {MAX_VISIBILITY})",
                    self.visibility_timeout
                ),
            );
        }
        if let Some(endpoint) = &self.endpoint
            && !is_http_url(endpoint)
        {
            err(
                format!("{at}.endpoint"),
                format!("{endpoint:?} is not an http:// or https:// URL"),
            );
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => err(
                format!("{at}.secret_access_key"),
                "is required with access_key_id".into(),
            ),
            (None, Some(_)) => err(
                format!("{at}.access_key_id"),
                "is required with secret_access_key".into(),
            ),
            _ => {}
        }
        if let Some(role) = &self.role_arn
            && !role.starts_with("arn:")
        {
            err(
                format!("{at}.role_arn"),
                format!("{role:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
            );
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        [&self.access_key_id, &self.secret_access_key]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// SQS accepts visibility timeouts in whole seconds up to 12 hours.
const MIN_VISIBILITY: HumanDuration = HumanDuration::from_secs(1);
const MAX_VISIBILITY: HumanDuration = HumanDuration::from_secs(12 * 3600);

fn is_http_url(text: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .any(|scheme| text.len() > scheme.len() && text.starts_with(scheme))
}

fn default_visibility_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Reads an empty string as unset, so that `${S3_ENDPOINT:-}` means "no endpoint".
fn empty_as_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|text| !text.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> S3EventFilter {
        serde_json::from_value(serde_json::Value::String(text.into())).unwrap()
    }

    #[test]
    fn event_filters_match_kinds_names_and_wildcards() {
        use ObjectChange::{Created, Removed};
        assert!(filter("created").matches(Created, "ObjectCreated:Put"));
        assert!(!filter("created").matches(Removed, "ObjectRemoved:Delete"));
        assert!(filter("removed").matches(Removed, "Object Deleted"));
        let put = filter("s3:ObjectCreated:Put");
        assert_eq!(put, S3EventFilter::Name("ObjectCreated:Put".into()));
        assert!(put.matches(Created, "ObjectCreated:Put"));
        assert!(put.matches(Created, "s3:ObjectCreated:Put"));
        assert!(!put.matches(Created, "ObjectCreated:Copy"));
        let removed = filter("s3:ObjectRemoved:*");
        assert!(removed.matches(Removed, "ObjectRemoved:DeleteMarkerCreated"));
        assert!(!removed.matches(Created, "ObjectCreated:Put"));
        for bad in ["create", "s3:", ""] {
            let error = serde_json::from_value::<S3EventFilter>(bad.into()).unwrap_err();
            assert!(error.to_string().contains("is not an S3 event"), "{error}");
        }
    }

    #[test]
    fn modes_read_as_a_word_or_a_block() {
        let source: S3Source =
            serde_json::from_value(serde_json::json!({"bucket": "b", "queue_url": "https://q"}))
                .unwrap();
        assert_eq!(source.mode, S3Mode::Notifications);
        assert_eq!(source.region, "us-east-1");
        let source: S3Source = serde_json::from_value(serde_json::json!({
            "bucket": "b", "mode": {"polling": {"interval": "5s"}}, "endpoint": ""
        }))
        .unwrap();
        assert_eq!(
            source.mode,
            S3Mode::Polling(S3Polling {
                interval: HumanDuration::from_secs(5)
            })
        );
        assert_eq!(source.endpoint, None, "an empty endpoint means AWS");
    }

    #[test]
    fn wants_applies_prefix_suffix_and_events() {
        let source: S3Source = serde_json::from_value(serde_json::json!({
            "bucket": "b", "prefix": "in/", "suffix": ".jpg", "events": ["created"]
        }))
        .unwrap();
        assert!(source.wants(ObjectChange::Created, "ObjectCreated:Put", "in/a b.jpg"));
        assert!(!source.wants(ObjectChange::Created, "ObjectCreated:Put", "out/a.jpg"));
        assert!(!source.wants(ObjectChange::Created, "ObjectCreated:Put", "in/a.png"));
        assert!(!source.wants(ObjectChange::Removed, "ObjectRemoved:Delete", "in/a.jpg"));
    }
}
