//! Retention on SQLite (the rules are in `crate::retention`).
//!
//! A batch of each table is one write transaction: it picks the oldest expired rows,
//! rolls the attempts of the deliveries it is about to delete up into `usage`, and
//! deletes them; foreign keys delete an event's deliveries and a delivery's attempts
//! with it. The write lock makes the pick and the delete see the same rows, and other
//! writers (claims, finishes) take their turn between batches.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};
use switchyard_core::config::{RetainedTable, RetentionConfig};

use super::SqliteStore;
use super::values::{parse_timestamp, timestamp};
use crate::retention::{RetentionDeleted, RetentionDue, Sources, earliest, rules};
use crate::{Result, StoreError, Usage};

/// `AND`-condition on the source column `column` for `sources`, whose names are bound
/// as `?1`, a JSON array.
fn source_condition(column: &str, sources: &Sources<'_>) -> String {
    let op = match sources {
        Sources::Only(_) => "IN",
        Sources::AllBut(_) => "NOT IN",
    };
    format!("{column} {op} (SELECT value FROM json_each(?1))")
}

fn names(sources: &Sources<'_>) -> String {
    serde_json::to_string(&sources.names()).expect("a list of names serializes")
}

/// The events of `sources` received before `?2` with no unfinished delivery.
fn expired_events(sources: &Sources<'_>) -> String {
    format!(
        "FROM events e
         WHERE {} AND e.received_at < ?2
           AND NOT EXISTS (SELECT 1 FROM deliveries d
                           WHERE d.event_id = e.id AND d.status IN ('pending', 'running', 'dead'))",
        source_condition("e.source_name", sources)
    )
}

/// The dead letters of events of `sources` that died before `?2`.
fn expired_dead_letters(sources: &Sources<'_>) -> String {
    format!(
        "FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.status = 'dead' AND d.updated_at < ?2 AND {}",
        source_condition("e.source_name", sources)
    )
}

/// The rejected inputs of `sources` received before `?2`.
fn expired_rejected_inputs(sources: &Sources<'_>) -> String {
    format!(
        "FROM rejected_inputs r WHERE r.received_at < ?2 AND {}",
        source_condition("r.source_name", sources)
    )
}

/// Adds the attempts of the deliveries `?1` (a JSON array of ids) to `usage`.
const ROLL_UP: &str = "
    INSERT INTO usage (day, trigger, attempts, succeeded, retried, dead, abandoned, handler_ms)
    SELECT substr(a.started_at, 1, 10), d.trigger, count(*),
           count(*) FILTER (WHERE a.outcome = 'succeeded'),
           count(*) FILTER (WHERE a.outcome = 'retry'),
           count(*) FILTER (WHERE a.outcome = 'dead'),
           count(*) FILTER (WHERE a.outcome = 'abandoned'),
           coalesce(sum(a.duration_ms), 0)
    FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
    WHERE d.id IN (SELECT value FROM json_each(?1))
    GROUP BY 1, 2
    ON CONFLICT (day, trigger) DO UPDATE SET
        attempts = usage.attempts + excluded.attempts,
        succeeded = usage.succeeded + excluded.succeeded,
        retried = usage.retried + excluded.retried,
        dead = usage.dead + excluded.dead,
        abandoned = usage.abandoned + excluded.abandoned,
        handler_ms = usage.handler_ms + excluded.handler_ms";

/// The attempts of the deliveries `?1` (a JSON array of ids).
const COUNT_ATTEMPTS: &str =
    "SELECT count(*) FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?1))";

impl SqliteStore {
    pub(super) async fn retention_due_now(
        &self,
        policy: &RetentionConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<RetentionDue>> {
        let mut report = Vec::new();
        for table in RetainedTable::ALL {
            let (time, oldest_sql) = match table {
                RetainedTable::Events => ("e.received_at", "SELECT min(received_at) FROM events"),
                RetainedTable::DeadLetters => (
                    "d.updated_at",
                    "SELECT min(updated_at) FROM deliveries WHERE status = 'dead'",
                ),
                RetainedTable::RejectedInputs => (
                    "r.received_at",
                    "SELECT min(received_at) FROM rejected_inputs",
                ),
            };
            let mut due = 0;
            let mut oldest_due = None;
            for (sources, before) in rules(policy, table, now) {
                let from = match table {
                    RetainedTable::Events => expired_events(&sources),
                    RetainedTable::DeadLetters => expired_dead_letters(&sources),
                    RetainedTable::RejectedInputs => expired_rejected_inputs(&sources),
                };
                let sql = format!("SELECT count(*), min({time}) {from}");
                let (count, oldest): (i64, Option<String>) = sqlx::query_as(&sql)
                    .bind(names(&sources))
                    .bind(timestamp(before))
                    .fetch_one(&self.pool)
                    .await?;
                due += count.unsigned_abs();
                oldest_due = earliest(
                    oldest_due,
                    oldest.as_deref().map(parse_timestamp).transpose()?,
                );
            }
            let oldest: Option<String> =
                sqlx::query_scalar(oldest_sql).fetch_one(&self.pool).await?;
            report.push(RetentionDue {
                table,
                due,
                oldest_due,
                oldest: oldest.as_deref().map(parse_timestamp).transpose()?,
            });
        }
        Ok(report)
    }

    pub(super) async fn delete_expired_batch(
        &self,
        policy: &RetentionConfig,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RetentionDeleted> {
        let mut deleted = RetentionDeleted::default();
        for (sources, before) in rules(policy, RetainedTable::Events, now) {
            let mut tx = self.write().await?;
            let pick = format!(
                "SELECT json_group_array(id) FROM (
                    SELECT e.id {} ORDER BY e.received_at LIMIT ?3)",
                expired_events(&sources)
            );
            let events = pick_ids(&mut tx, &pick, &sources, before, limit).await?;
            let deliveries: String = sqlx::query_scalar(
                "SELECT json_group_array(id) FROM deliveries
                 WHERE event_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(&events)
            .fetch_one(&mut *tx)
            .await?;
            deleted.attempts += roll_up(&mut tx, &deliveries).await?;
            deleted.deliveries += json_len(&deliveries)?;
            let done =
                sqlx::query("DELETE FROM events WHERE id IN (SELECT value FROM json_each(?1))")
                    .bind(&events)
                    .execute(&mut *tx)
                    .await?;
            deleted.events += done.rows_affected();
            tx.commit().await?;
        }
        for (sources, before) in rules(policy, RetainedTable::DeadLetters, now) {
            let mut tx = self.write().await?;
            let pick = format!(
                "SELECT json_group_array(id) FROM (
                    SELECT d.id {} ORDER BY d.updated_at LIMIT ?3)",
                expired_dead_letters(&sources)
            );
            let dead = pick_ids(&mut tx, &pick, &sources, before, limit).await?;
            deleted.attempts += roll_up(&mut tx, &dead).await?;
            let done =
                sqlx::query("DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?1))")
                    .bind(&dead)
                    .execute(&mut *tx)
                    .await?;
            deleted.dead_letters += done.rows_affected();
            tx.commit().await?;
        }
        for (sources, before) in rules(policy, RetainedTable::RejectedInputs, now) {
            let mut tx = self.write().await?;
            let sql = format!(
                "DELETE FROM rejected_inputs WHERE id IN (
                    SELECT r.id {} ORDER BY r.received_at LIMIT ?3)",
                expired_rejected_inputs(&sources)
            );
            let done = sqlx::query(&sql)
                .bind(names(&sources))
                .bind(timestamp(before))
                .bind(i64::from(limit))
                .execute(&mut *tx)
                .await?;
            deleted.rejected_inputs += done.rows_affected();
            tx.commit().await?;
        }
        Ok(deleted)
    }
}

impl SqliteStore {
    pub(super) async fn usage_rows(&self) -> Result<Vec<Usage>> {
        let rows = sqlx::query(
            "SELECT day, trigger, attempts, succeeded, retried, dead, abandoned, handler_ms
             FROM usage ORDER BY day, trigger",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| -> Result<u64> {
                    Ok(row.try_get::<i64, _>(column)?.unsigned_abs())
                };
                let day: String = row.try_get("day")?;
                Ok(Usage {
                    day: day.parse().map_err(|error| {
                        StoreError::Invalid(format!("usage day {day:?} is not a date: {error}"))
                    })?,
                    trigger: row.try_get("trigger")?,
                    attempts: count("attempts")?,
                    succeeded: count("succeeded")?,
                    retried: count("retried")?,
                    dead: count("dead")?,
                    abandoned: count("abandoned")?,
                    handler_ms: count("handler_ms")?,
                })
            })
            .collect()
    }
}

/// The ids `pick` selects, as one JSON array (binding `?1` sources, `?2` before, `?3`
/// limit).
async fn pick_ids(
    conn: &mut SqliteConnection,
    pick: &str,
    sources: &Sources<'_>,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<String> {
    let ids: String = sqlx::query_scalar(pick)
        .bind(names(sources))
        .bind(timestamp(before))
        .bind(i64::from(limit))
        .fetch_one(conn)
        .await?;
    Ok(ids)
}

/// Rolls the attempts of `deliveries` (a JSON array of ids) up into `usage`; returns
/// how many attempts there were.
async fn roll_up(conn: &mut SqliteConnection, deliveries: &str) -> Result<u64> {
    let attempts: i64 = sqlx::query_scalar(COUNT_ATTEMPTS)
        .bind(deliveries)
        .fetch_one(&mut *conn)
        .await?;
    if attempts > 0 {
        sqlx::query(ROLL_UP).bind(deliveries).execute(conn).await?;
    }
    Ok(attempts.unsigned_abs())
}

/// The length of a JSON array.
fn json_len(array: &str) -> Result<u64> {
    let items: Vec<serde_json::Value> = serde_json::from_str(array)
        .map_err(|error| StoreError::Invalid(format!("not a JSON array: {error}")))?;
    Ok(items.len() as u64)
}
