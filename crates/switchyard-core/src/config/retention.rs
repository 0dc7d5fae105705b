//! `retention:` — how long the store keeps events, dead letters and rejected inputs,
//! and the per-source overrides written under `sources.NAME.retention`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::HumanDuration;

/// `retention:` — what the engine deletes, and how often it looks.
///
/// An event goes when it is older than `events` and every delivery of it has
/// finished: it succeeded, or it died and was replayed or purged. A dead letter keeps
/// its event, and goes itself when it has been dead for `dead_letters`. A rejected
/// input goes when it is older than `rejected_inputs`. Before attempts are deleted
/// with their delivery, they are counted into the `usage` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long an event is kept after it was received. `0` or `off` keeps events
    /// forever.
    #[serde(default = "default_events")]
    pub events: RetentionPeriod,
    /// How long a dead letter is kept after its delivery died. `0` or `off` keeps
    /// dead letters until they are replayed or purged.
    #[serde(default = "default_dead_letters")]
    pub dead_letters: RetentionPeriod,
    /// How long an input that a source rejected is kept. `0` or `off` keeps them
    /// forever.
    #[serde(default = "default_rejected_inputs")]
    pub rejected_inputs: RetentionPeriod,
    /// How often `switchyard run` deletes what has expired (and once at start).
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Overrides by source name, from `sources.NAME.retention`.
    #[serde(skip)]
    pub sources: BTreeMap<String, SourceRetention>,
}

/// `sources.NAME.retention:` — this source's periods where they differ from the
/// top-level `retention:`. A period left out is the top-level one.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceRetention {
    /// How long this source's events are kept.
    #[serde(default)]
    pub events: Option<RetentionPeriod>,
    /// How long dead letters of this source's events are kept.
    #[serde(default)]
    pub dead_letters: Option<RetentionPeriod>,
    /// How long this source's rejected inputs are kept.
    #[serde(default)]
    pub rejected_inputs: Option<RetentionPeriod>,
}

/// What retention deletes, each with its own period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetainedTable {
    /// Events whose deliveries have all finished, with those deliveries and attempts.
    Events,
    /// Dead deliveries, with their attempts, aged from when they died.
    DeadLetters,
    /// Inputs sources rejected.
    RejectedInputs,
}

impl RetainedTable {
    /// Every table, in the order reports list them.
    pub const ALL: [Self; 3] = [Self::Events, Self::DeadLetters, Self::RejectedInputs];

    /// The name used in config, metrics labels and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::DeadLetters => "dead_letters",
            Self::RejectedInputs => "rejected_inputs",
        }
    }
}

impl fmt::Display for RetainedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl RetentionConfig {
    /// The default period of `table`.
    pub fn period(&self, table: RetainedTable) -> RetentionPeriod {
        match table {
            RetainedTable::Events => self.events,
            RetainedTable::DeadLetters => self.dead_letters,
            RetainedTable::RejectedInputs => self.rejected_inputs,
        }
    }

    /// The sources whose period for `table` differs from the default, with theirs.
    pub fn overrides(&self, table: RetainedTable) -> impl Iterator<Item = (&str, RetentionPeriod)> {
        self.sources.iter().filter_map(move |(name, source)| {
            let period = match table {
                RetainedTable::Events => source.events,
                RetainedTable::DeadLetters => source.dead_letters,
                RetainedTable::RejectedInputs => source.rejected_inputs,
            }?;
            Some((name.as_str(), period))
        })
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events: default_events(),
            dead_letters: default_dead_letters(),
            rejected_inputs: default_rejected_inputs(),
            interval: default_interval(),
            sources: BTreeMap::new(),
        }
    }
}

const DAY: u64 = 86_400;

fn default_events() -> RetentionPeriod {
    RetentionPeriod::keep_for(Duration::from_secs(30 * DAY))
}
fn default_dead_letters() -> RetentionPeriod {
    RetentionPeriod::keep_for(Duration::from_secs(90 * DAY))
}
fn default_rejected_inputs() -> RetentionPeriod {
    RetentionPeriod::keep_for(Duration::from_secs(30 * DAY))
}
fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

/// How long rows are kept: a duration such as `30d`, or forever, written `0` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPeriod(Option<Duration>);

impl RetentionPeriod {
    /// Rows are kept forever.
    pub const FOREVER: Self = Self(None);

    /// Rows are kept for `period`; a zero period keeps them forever.
    pub fn keep_for(period: Duration) -> Self {
        Self(Some(period).filter(|period| !period.is_zero()))
    }

    /// How long rows are kept; `None` is forever.
    pub fn get(self) -> Option<Duration> {
        self.0
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(period) => HumanDuration(period).fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for RetentionPeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RetentionPeriod;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30d, or 0 or off to keep rows forever")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.trim() == "off" || v.trim() == "0" {
                    return Ok(RetentionPeriod::FOREVER);
                }
                let period: HumanDuration = v.parse().map_err(|_| {
                    E::custom(format!(
                        "{v:?} is not a retention period (try 30d, 12h, or off to keep rows forever)"
                    ))
                })?;
                Ok(RetentionPeriod::keep_for(period.get()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if v == 0 {
                    Ok(RetentionPeriod::FOREVER)
                } else {
                    Err(E::custom(format!(
                        "{v} has no unit; write it as {v}d or {v}h (or 0 or off to keep rows forever)"
                    )))
                }
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("{v} is not a retention period"))),
                }
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::custom(
                        "true is not a retention period (try 30d, or off to keep rows forever)",
                    ))
                } else {
                    Ok(RetentionPeriod::FOREVER)
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigErrors};

    fn load(text: &str) -> Result<Config, Vec<String>> {
        Config::load(text, &|_: &str| None, &|_: &str| false)
            .map_err(|ConfigErrors(errors)| errors.iter().map(ToString::to_string).collect())
    }

    const DAYS: fn(u64) -> RetentionPeriod =
        |days| RetentionPeriod::keep_for(Duration::from_secs(days * DAY));

    #[test]
    fn defaults_keep_events_30_days_and_dead_letters_90() {
        let config = load("sources: {}\n").unwrap();
        assert_eq!(config.retention.events, DAYS(30));
        assert_eq!(config.retention.dead_letters, DAYS(90));
        assert_eq!(config.retention.rejected_inputs, DAYS(30));
        assert_eq!(config.retention.interval, HumanDuration::from_secs(3600));
        assert!(config.retention.sources.is_empty());
    }

    #[test]
    fn zero_and_off_keep_forever_and_sources_override() {
        let config = load(
            "retention: { events: 7d, dead_letters: off, rejected_inputs: 0, interval: 5m }\n\
             sources:\n\
             \x20 hooks:\n\
             \x20   http: { path: /hooks }\n\
             \x20   retention: { events: 12h, rejected_inputs: off }\n\
             \x20 nightly:\n\
             \x20   cron: { schedule: '@daily' }\n",
        )
        .unwrap();
        let retention = &config.retention;
        assert_eq!(retention.events, DAYS(7));
        assert_eq!(retention.dead_letters, RetentionPeriod::FOREVER);
        assert_eq!(retention.rejected_inputs, RetentionPeriod::FOREVER);
        assert_eq!(retention.interval, HumanDuration::from_secs(300));
        assert!(matches!(
            config.sources["hooks"],
            crate::config::SourceConfig::Http(_)
        ));
        let half_day = RetentionPeriod::keep_for(Duration::from_secs(12 * 3600));
        assert_eq!(
            retention
                .overrides(RetainedTable::Events)
                .collect::<Vec<_>>(),
            [("hooks", half_day)]
        );
        assert_eq!(
            retention
                .overrides(RetainedTable::RejectedInputs)
                .collect::<Vec<_>>(),
            [("hooks", RetentionPeriod::FOREVER)]
        );
        assert_eq!(retention.overrides(RetainedTable::DeadLetters).count(), 0);
        assert_eq!(
            retention.period(RetainedTable::DeadLetters).to_string(),
            "off"
        );
    }

    #[test]
    fn bad_retention_is_reported_at_its_path() {
        let errors = load(
            "retention: { events: 30 days }\n\
             sources:\n\
             \x20 hooks:\n\
             \x20   http: { path: /hooks }\n\
             \x20   retention: { interval: 1h }\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "retention.events: \"30 days\" is not a retention period (try 30d, 12h, or off to keep rows forever)",
                "sources.hooks.retention.interval: unknown field `interval`, expected one of `events`, `dead_letters`, `rejected_inputs`",
            ]
        );
        let errors = load("retention: { dead_letters: 5 }\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "retention.dead_letters: 5 has no unit; write it as 5d or 5h (or 0 or off to keep rows forever)"
            ]
        );
        let errors = load("retention: { interval: 500ms }\n").unwrap_err();
        assert_eq!(
            errors,
            ["retention.interval: 500ms is too short (at least 1s)"]
        );
    }
}
