//! `cron:` — a schedule that fires `cron.tick` events.

use serde::Deserialize;

use super::{SharedChecks, SourceSettings};
use crate::HumanDuration;
use crate::schedule::{CatchUp, Schedule, ScheduleError};

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

impl SourceSettings for CronSource {
    fn check(
        &self,
        name: &str,
        at: &str,
        _shared: &mut SharedChecks,
        err: &mut dyn FnMut(String, String),
    ) {
        if let Err(e) = Schedule::parse(&self.schedule, &self.timezone) {
            let field = match e {
                ScheduleError::Expression(_) => "schedule",
                ScheduleError::TimeZone(_) => "timezone",
            };
            err(format!("{at}.{field}"), e.to_string());
        }
        // Every tick carries the payload; the event log must be able to hold it.
        if let Some(payload) = &self.data {
            let tick = crate::Event::new(name, "", "").with_json(payload.clone());
            if let Err(unstorable) = tick.check_storable() {
                err(format!("{at}.data"), unstorable.to_string());
            }
        }
    }
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
