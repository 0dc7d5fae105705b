//! Cron schedules: next-fire computation in a time zone, and the catch-up plan for
//! fires missed while no process was running.
//!
//! DST follows croner's documented rules (the Open Cron Pattern Specification, as
//! Vixie cron does it): a fixed-time job whose time falls in a spring-forward gap runs
//! once, at the first valid time after the gap; a fixed-time job in a repeated
//! fall-back hour runs once, at the first occurrence. Wildcard fields (`*/15` minutes)
//! follow the wall clock.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Deserialize;

use crate::HumanDuration;

/// A parsed cron expression in a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

impl Schedule {
    /// Parses a 5-field (minutes) or 6-field (seconds first) expression, or an alias
    /// such as `@hourly`, in an IANA time zone. Errors are messages for `validate`.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                ScheduleError::Expression(format!("{expression:?} is not a cron expression: {e}"))
            })?;
        let timezone: Tz = timezone.parse().map_err(|_| {
            ScheduleError::TimeZone(format!(
                "{timezone:?} is not an IANA time zone (try Europe/Berlin or UTC)"
            ))
        })?;
        Ok(Self {
            expression: expression.to_owned(),
            cron,
            timezone,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.timezone), false)
            .ok()
    }

    /// Up to `limit` fires strictly after `t`, in order.
    pub fn upcoming(&self, t: DateTime<Utc>, limit: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(limit);
        let mut cursor = t;
        while out.len() < limit {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            cursor = next.with_timezone(&Utc);
            out.push(next);
        }
        out
    }

    /// The fires in `(after, until]`, oldest first, at most `limit` of them.
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Tz>> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next.with_timezone(&Utc) <= until => {
                    cursor = next.with_timezone(&Utc);
                    out.push(next);
                }
                _ => break,
            }
        }
        out
    }
}

/// Why a schedule is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Expression(String),
    #[error("{0}")]
    TimeZone(String),
}

/// What to do with fires missed while every process was down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Skip them all (each is recorded as skipped).
    None,
    /// Fire the most recent one; skip the rest.
    #[default]
    Latest,
    /// Fire each, oldest first, up to `max_catch_up`; skip the older rest.
    All,
}

/// Which missed fires to fire and which to record as skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatchUpPlan {
    pub fire: Vec<DateTime<Utc>>,
    pub skip: Vec<DateTime<Utc>>,
}

/// Plans the catch-up for `missed` fires (oldest first) at `now`. Fires older than
/// `max_age` are always skipped; `max_catch_up` bounds how many `all` fires.
pub fn plan_catch_up(
    missed: &[DateTime<Utc>],
    policy: CatchUp,
    max_catch_up: usize,
    max_age: Option<HumanDuration>,
    now: DateTime<Utc>,
) -> CatchUpPlan {
    let fresh = |t: &DateTime<Utc>| {
        max_age.is_none_or(|age| (now - *t).to_std().unwrap_or_default() <= age.get())
    };
    let eligible: Vec<DateTime<Utc>> = missed.iter().copied().filter(fresh).collect();
    let fire: Vec<DateTime<Utc>> = match policy {
        CatchUp::None => Vec::new(),
        CatchUp::Latest => eligible.last().copied().into_iter().collect(),
        CatchUp::All => eligible[eligible.len().saturating_sub(max_catch_up)..].to_vec(),
    };
    let skip = missed
        .iter()
        .copied()
        .filter(|t| !fire.contains(t))
        .collect();
    CatchUpPlan { fire, skip }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next_local(expr: &str, tz: &str, after: &str) -> String {
        let schedule = Schedule::parse(expr, tz).unwrap();
        schedule.next_after(utc(after)).unwrap().to_rfc3339()
    }

    fn fires(expr: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
        let schedule = Schedule::parse(expr, tz).unwrap();
        schedule
            .between(utc(from), utc(to), 100)
            .iter()
            .map(DateTime::to_rfc3339)
            .collect()
    }

    #[test]
    fn spring_forward_runs_once_just_after_the_gap() {
        // Berlin skips 02:00-03:00 on 2026-03-29: a 02:30 job runs at 03:00 CEST.
        assert_eq!(
            fires(
                "30 2 * * *",
                "Europe/Berlin",
                "2026-03-28T12:00:00Z",
                "2026-03-30T12:00:00Z"
            ),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
        // New York skips 02:00-03:00 on 2026-03-08.
        assert_eq!(
            fires(
                "30 2 * * *",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                "2026-03-09T12:00:00Z"
            ),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
        // Lord Howe moves by 30 minutes: 02:00-02:30 is skipped on 2026-10-04.
        assert_eq!(
            fires(
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2026-10-03T12:00:00Z",
                "2026-10-04T12:00:00Z"
            ),
            ["2026-10-04T02:30:00+11:00"]
        );
        // São Paulo has had no DST since 2019: midnight always exists.
        assert_eq!(
            next_local("0 0 * * *", "America/Sao_Paulo", "2026-11-01T02:59:00Z"),
            "2026-11-01T00:00:00-03:00"
        );
    }

    #[test]
    fn fall_back_runs_once_not_twice() {
        // Berlin repeats 02:00-03:00 on 2026-10-25.
        assert_eq!(
            fires(
                "30 2 * * *",
                "Europe/Berlin",
                "2026-10-24T12:00:00Z",
                "2026-10-26T12:00:00Z"
            ),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        // New York repeats 01:00-02:00 on 2026-11-01.
        assert_eq!(
            fires(
                "30 1 * * *",
                "America/New_York",
                "2026-10-31T12:00:00Z",
                "2026-11-02T12:00:00Z"
            ),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        // Lord Howe repeats 01:30-02:00 on 2026-04-05.
        assert_eq!(
            fires(
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-03T12:00:00Z",
                "2026-04-05T12:00:00Z"
            ),
            ["2026-04-04T01:45:00+11:00", "2026-04-05T01:45:00+11:00"]
        );
    }

    #[test]
    fn seconds_fields_and_aliases() {
        assert_eq!(
            fires(
                "*/20 * * * * *",
                "UTC",
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:01:00Z"
            ),
            [
                "2026-01-01T00:00:20+00:00",
                "2026-01-01T00:00:40+00:00",
                "2026-01-01T00:01:00+00:00"
            ]
        );
        assert_eq!(
            next_local("@hourly", "UTC", "2026-01-01T00:10:00Z"),
            "2026-01-01T01:00:00+00:00"
        );
        assert_eq!(
            next_local("0 0 2 * * *", "Europe/Berlin", "2026-01-01T00:00:00Z"),
            "2026-01-01T02:00:00+01:00"
        );
    }

    #[test]
    fn invalid_expressions_and_zones_are_explained() {
        let err = Schedule::parse("61 * * * *", "UTC").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("\"61 * * * *\" is not a cron expression"),
            "{err}"
        );
        let err = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Mars/Olympus\" is not an IANA time zone (try Europe/Berlin or UTC)"
        );
    }

    /// A 2-hour outage of a 15-minute schedule: 8 missed fires.
    fn outage() -> (Vec<DateTime<Utc>>, DateTime<Utc>) {
        let schedule = Schedule::parse("*/15 * * * *", "UTC").unwrap();
        let down = Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap();
        let now = down + chrono::Duration::hours(2) + chrono::Duration::minutes(5);
        let missed = schedule
            .between(down, now, 1000)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        (missed, now)
    }

    #[test]
    fn catch_up_policies_after_a_two_hour_outage() {
        let (missed, now) = outage();
        assert_eq!(missed.len(), 8);
        let none = plan_catch_up(&missed, CatchUp::None, 100, None, now);
        assert!(none.fire.is_empty());
        assert_eq!(none.skip, missed);

        let latest = plan_catch_up(&missed, CatchUp::Latest, 100, None, now);
        assert_eq!(latest.fire, [missed[7]]);
        assert_eq!(latest.skip, missed[..7]);

        let all = plan_catch_up(&missed, CatchUp::All, 100, None, now);
        assert_eq!(all.fire, missed);
        assert!(all.skip.is_empty());

        let bounded = plan_catch_up(&missed, CatchUp::All, 3, None, now);
        assert_eq!(bounded.fire, missed[5..]);
        assert_eq!(bounded.skip, missed[..5]);

        let recent = plan_catch_up(
            &missed,
            CatchUp::All,
            100,
            Some(HumanDuration::from_secs(3600)),
            now,
        );
        assert_eq!(recent.fire.len(), 4, "only fires within the last hour");
        assert_eq!(
            recent.skip.len() + recent.fire.len(),
            missed.len(),
            "every missed fire is accounted for"
        );
    }
}
