//! What users write under `sources:`. One enum variant per source kind.

use serde::Deserialize;

use super::{S3Source, Secret};
use crate::HumanDuration;
use crate::schedule::CatchUp;

/// A source: exactly one kind key, holding that kind's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Webhooks and plain HTTP requests on a path of the shared listener.
    Http(HttpSource),
    /// Objects created in or removed from an S3 bucket, from its event notifications
    /// through SQS, or by listing the bucket.
    S3(S3Source),
    /// Postgres row changes by logical replication; not built yet.
    Postgres(serde_json::Value),
    /// A cron schedule: fires `cron.tick` events, exactly once per scheduled time.
    Cron(CronSource),
}

impl SourceConfig {
    /// The YAML key of this kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::S3(_) => "s3",
            Self::Postgres(_) => "postgres",
            Self::Cron(_) => "cron",
        }
    }
}

/// `http:` — requests to `path` become events.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// The path on the shared listener, such as `/hooks/github`. Must start with `/`.
    pub path: String,
    /// How requests prove where they come from. Without it, any request is accepted.
    #[serde(default)]
    pub verify: Option<Verify>,
    /// Larger bodies are answered with 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: ByteSize,
    /// Request headers copied into `data.headers` of plain (non-CloudEvents) requests.
    /// Names are case-insensitive. Verification headers are never copied.
    #[serde(default)]
    pub headers: Vec<String>,
    /// The event `type` for plain requests. Defaults to `http.request`.
    #[serde(default = "default_http_type", rename = "type")]
    pub ty: String,
}

/// `cron:` — a schedule that fires `cron.tick` events.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSource {
    /// A 5-field (minutes) or 6-field (seconds first) cron expression, or an alias such
    /// as `@hourly` or `@daily`.
    pub schedule: String,
    /// The IANA time zone the expression is read in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// What happens to fires missed while every process was down.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// With `catch_up: all`, fire at most this many missed fires (the most recent).
    #[serde(default = "default_max_catch_up")]
    pub max_catch_up: u32,
    /// Missed fires older than this are skipped, whatever `catch_up` says.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    /// Static JSON added to every tick as `data.payload`.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// A disabled schedule does not fire.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

fn default_max_catch_up() -> u32 {
    100
}

fn default_enabled() -> bool {
    true
}

fn default_body_limit() -> ByteSize {
    ByteSize(1024 * 1024)
}

fn default_http_type() -> String {
    "http.request".to_owned()
}

/// Request verification presets.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Verify {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
    Github { secret: Secret },
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "ts.body")>`.
    Stripe {
        secret: Secret,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`; the
    /// secret is `whsec_` followed by the base64 key.
    StandardWebhooks {
        secret: Secret,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:ts:body")>` with
    /// `X-Slack-Request-Timestamp`.
    Slack {
        secret: Secret,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// Any HMAC of the raw body carried in one header.
    Hmac(HmacVerify),
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
}

/// Whether `secret` is a Standard Webhooks secret: an optional `whsec_` prefix and a
/// non-empty base64 key.
pub fn is_standard_webhooks_secret(secret: &str) -> bool {
    use base64::Engine as _;
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|key| !key.is_empty())
}

fn default_tolerance() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// `verify: { hmac: ... }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacVerify {
    pub secret: Secret,
    /// The header holding the signature, such as `X-Signature`.
    pub header: String,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// Text before the signature in the header, such as `sha256=`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub encoding: SignatureEncoding,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// A size in bytes, written as `512`, `64KiB`, `1MiB`, `1MB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => return Ok(Self(n)),
            Raw::Text(text) => text,
        };
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let unit = match text[digits..].trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => 0,
        };
        match text[..digits].parse::<u64>() {
            Ok(n) if unit > 0 => Ok(Self(n * unit)),
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is not a size (try 512KiB or 1MiB)"
            ))),
        }
    }
}
