//! Retention: which rows have outlived their period, and what deleting them reports.
//!
//! The rules, the same on both backends (the SQL is in each backend's `retention.rs`):
//! - An event is deleted when it is older than its source's `events` period and no
//!   delivery of it is unfinished: none pending or running, and none dead (a dead
//!   letter keeps its event until it is replayed, purged or expires itself). Its
//!   deliveries and their attempts go with it.
//! - A dead letter is deleted when its delivery died longer ago than its event's
//!   source's `dead_letters` period, with its attempts.
//! - A rejected input is deleted when it is older than its source's `rejected_inputs`
//!   period.
//! - The attempts of every delivery deleted are first added to `usage`, in the same
//!   transaction, per UTC day of the attempt's start and trigger.
//!
//! Rows go oldest first, in batches that each commit on their own, so that no
//! transaction holds many rows and the queue keeps moving. On Postgres a batch locks
//! its rows with `SKIP LOCKED` and checks the rules again before deleting, so it never
//! waits for, nor blocks, a claim or a replay of the same event.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use switchyard_core::config::{RetainedTable, RetentionConfig};

use crate::{Result, Store};

/// How many rows of each table one batch deletes at most.
pub const RETENTION_BATCH: u32 = 1000;

/// What retention would delete from one table now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionDue {
    /// The table: `events`, `dead_letters` or `rejected_inputs`.
    #[serde(serialize_with = "table_name")]
    pub table: RetainedTable,
    /// Rows past their period that retention would delete.
    pub due: u64,
    /// When the oldest of those rows was received (for dead letters: died).
    pub oldest_due: Option<DateTime<Utc>>,
    /// When the oldest row in the table, due or not, was received (died).
    pub oldest: Option<DateTime<Utc>>,
}

fn table_name<S: serde::Serializer>(
    table: &RetainedTable,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(table.name())
}

/// Rows retention deleted, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionDeleted {
    /// Events, whose deliveries had all finished.
    pub events: u64,
    /// Deliveries deleted with those events.
    pub deliveries: u64,
    /// Dead letters (dead deliveries) deleted by their own period.
    pub dead_letters: u64,
    /// Attempts of the deliveries and dead letters deleted, counted into `usage`.
    pub attempts: u64,
    /// Rejected inputs.
    pub rejected_inputs: u64,
}

impl RetentionDeleted {
    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Per table, as the metric labels name them.
    pub fn by_table(&self) -> [(&'static str, u64); 5] {
        [
            ("events", self.events),
            ("deliveries", self.deliveries),
            ("dead_letters", self.dead_letters),
            ("attempts", self.attempts),
            ("rejected_inputs", self.rejected_inputs),
        ]
    }
}

impl std::ops::AddAssign for RetentionDeleted {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.dead_letters += other.dead_letters;
        self.attempts += other.attempts;
        self.rejected_inputs += other.rejected_inputs;
    }
}

/// A row of `usage`: attempts of one trigger that started on one UTC day, counted when
/// retention deleted them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub day: NaiveDate,
    pub trigger: String,
    /// Every attempt.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Attempts that made their delivery a dead letter.
    pub dead: u64,
    /// Attempts whose lease expired before they reported.
    pub abandoned: u64,
    /// How long the attempts ran, in milliseconds.
    pub handler_ms: u64,
}

/// Deletes everything that has expired at `now`, batch after batch, until a batch
/// finds nothing more. Returns the totals.
///
/// Cancellation safe: each batch commits or rolls back as a whole, so dropping the
/// future stops between batches or loses the batch in progress, never half of one.
pub async fn delete_expired(
    store: &dyn Store,
    policy: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<RetentionDeleted> {
    let mut total = RetentionDeleted::default();
    loop {
        let batch = store.delete_expired(policy, now, RETENTION_BATCH).await?;
        if batch.is_empty() {
            return Ok(total);
        }
        total += batch;
    }
}

/// Which sources a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sources<'a> {
    /// The one source that overrides the period.
    Only(&'a str),
    /// Every source but those that override the period.
    AllBut(Vec<&'a str>),
}

impl Sources<'_> {
    /// The names the rule lists: the one it covers, or those it leaves out.
    pub(crate) fn names(&self) -> Vec<&str> {
        match self {
            Self::Only(source) => vec![source],
            Self::AllBut(sources) => sources.clone(),
        }
    }
}

/// The earlier of two optional times.
pub(crate) fn earliest(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The rules for `table` at `now`: which sources, and the time before which their rows
/// have expired. Sources whose rows are kept forever have no rule.
pub(crate) fn rules<'a>(
    policy: &'a RetentionConfig,
    table: RetainedTable,
    now: DateTime<Utc>,
) -> Vec<(Sources<'a>, DateTime<Utc>)> {
    let cutoff = |period: switchyard_core::config::RetentionPeriod| {
        let period = chrono::Duration::from_std(period.get()?).ok()?;
        now.checked_sub_signed(period)
    };
    let overrides: BTreeMap<&str, _> = policy.overrides(table).collect();
    let mut rules: Vec<_> = overrides
        .iter()
        .filter_map(|(&source, &period)| Some((Sources::Only(source), cutoff(period)?)))
        .collect();
    if let Some(before) = cutoff(policy.period(table)) {
        rules.push((Sources::AllBut(overrides.into_keys().collect()), before));
    }
    rules
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_core::config::{RetentionPeriod, SourceRetention};

    use super::*;

    #[test]
    fn overrides_get_their_own_rule_and_forever_gets_none() {
        let day = Duration::from_secs(86_400);
        let mut policy = RetentionConfig {
            events: RetentionPeriod::keep_for(30 * day),
            ..RetentionConfig::default()
        };
        policy.sources.insert(
            "audit".into(),
            SourceRetention {
                events: Some(RetentionPeriod::FOREVER),
                ..SourceRetention::default()
            },
        );
        policy.sources.insert(
            "hooks".into(),
            SourceRetention {
                events: Some(RetentionPeriod::keep_for(day)),
                ..SourceRetention::default()
            },
        );
        policy
            .sources
            .insert("quiet".into(), SourceRetention::default());
        let now = Utc::now();
        assert_eq!(
            rules(&policy, RetainedTable::Events, now),
            [
                (Sources::Only("hooks"), now - chrono::Duration::days(1)),
                (
                    Sources::AllBut(vec!["audit", "hooks"]),
                    now - chrono::Duration::days(30)
                ),
            ]
        );
        policy.events = RetentionPeriod::FOREVER;
        assert_eq!(
            rules(&policy, RetainedTable::Events, now),
            [(Sources::Only("hooks"), now - chrono::Duration::days(1))]
        );
        assert_eq!(
            rules(&policy, RetainedTable::DeadLetters, now),
            [(Sources::AllBut(vec![]), now - chrono::Duration::days(90))]
        );
    }
}
