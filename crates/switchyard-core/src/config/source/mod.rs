//! What users write under `sources:`. One module per source kind holds its settings
//! and their checks ([`SourceSettings`]); a kind is registered by its enum variant
//! and its arm in [`SourceConfig::settings`].

mod cron;
mod http;
mod s3;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use cron::CronSource;
pub use http::{HmacAlgorithm, HmacVerify, HttpSource, SignatureEncoding, Verify};
pub use s3::{ObjectChange, S3EventFilter, S3Mode, S3Polling, S3Source};

use super::Secret;

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

    /// The settings of a kind that is built; `None` for one that is not yet (its
    /// configuration is refused by `validate`).
    pub(crate) fn settings(&self) -> Option<&dyn SourceSettings> {
        match self {
            Self::Http(http) => Some(http),
            Self::S3(s3) => Some(s3),
            Self::Cron(cron) => Some(cron),
            Self::Postgres(_) => None,
        }
    }
}

/// What a kind's settings tell `Config::validate` and `Config::secret_values`.
pub(crate) trait SourceSettings {
    /// Reports each problem of the settings of source `name` through `err`, with
    /// paths under `at` (`sources.NAME.KIND`). Pure: nothing is contacted.
    fn check(
        &self,
        name: &str,
        at: &str,
        shared: &mut SharedChecks,
        err: &mut dyn FnMut(String, String),
    );

    /// The secret values the settings hold.
    fn secrets(&self) -> Vec<&Secret> {
        Vec::new()
    }
}

/// What the checks of several sources share: the listener paths taken so far, and
/// by which source, so two sources cannot claim one path.
#[derive(Default)]
pub(crate) struct SharedChecks {
    pub paths: BTreeMap<String, String>,
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
