//! Retention on Postgres (the rules are in `crate::retention`).
//!
//! A batch of events or dead letters is two statements in one transaction: the first
//! picks the oldest expired rows and locks them with `FOR UPDATE SKIP LOCKED`, passing
//! over rows that a replay holds (it locks the event `FOR KEY SHARE`); the second checks
//! the rules again, under the lock and with a fresh snapshot, deletes what still
//! qualifies and rolls the attempts of the deliveries it deletes up into `usage`. Claims
//! never wait on a batch: a batch touches no pending delivery, and a claim no finished
//! one.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row};
use switchyard_core::config::{RetainedTable, RetentionConfig};
use uuid::Uuid;

use super::PostgresStore;
use crate::retention::{RetentionDeleted, RetentionDue, Sources, earliest, rules};
use crate::{Result, Usage};

/// Deliveries in these states keep their event.
const UNFINISHED: &str = "('pending', 'dead')";

/// `AND`-condition on the source column `column` for `sources`, whose names are bound
/// as `$1` (see [`Sources::names`]).
fn source_condition(column: &str, sources: &Sources<'_>) -> String {
    match sources {
        Sources::Only(_) => format!("{column} = ANY($1)"),
        Sources::AllBut(_) => format!("{column} <> ALL($1)"),
    }
}

/// The events of `sources` received before `$2` with no unfinished delivery.
fn expired_events(sources: &Sources<'_>) -> String {
    format!(
        "FROM switchyard.events e
         WHERE {} AND e.received_at < $2
           AND NOT EXISTS (SELECT 1 FROM switchyard.deliveries d
                           WHERE d.event_id = e.id AND d.status IN {UNFINISHED})",
        source_condition("e.source_name", sources)
    )
}

/// The dead letters of events of `sources` that died before `$2`.
fn expired_dead_letters(sources: &Sources<'_>) -> String {
    format!(
        "FROM switchyard.deliveries d JOIN switchyard.events e ON e.id = d.event_id
         WHERE d.status = 'dead' AND d.updated_at < $2 AND {}",
        source_condition("e.source_name", sources)
    )
}

/// The rejected inputs of `sources` received before `$2`.
fn expired_rejected_inputs(sources: &Sources<'_>) -> String {
    format!(
        "FROM switchyard.rejected_inputs r WHERE r.received_at < $2 AND {}",
        source_condition("r.source_name", sources)
    )
}

/// Given a CTE `doomed (id, trigger)` of deliveries about to be deleted, adds their
/// attempts to `usage` (CTE `rolled`); CTE `counted` holds the counts added.
const ROLL_UP: &str = "
    counted AS (
        SELECT (a.started_at AT TIME ZONE 'UTC')::date AS day, doomed.trigger,
               count(*) AS attempts,
               count(*) FILTER (WHERE a.outcome = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE a.outcome = 'retry') AS retried,
               count(*) FILTER (WHERE a.outcome = 'dead') AS dead,
               count(*) FILTER (WHERE a.outcome = 'abandoned') AS abandoned,
               coalesce(sum(a.duration_ms), 0)::bigint AS handler_ms
        FROM doomed JOIN switchyard.attempts a ON a.delivery_id = doomed.id
        GROUP BY 1, 2
    ), rolled AS (
        INSERT INTO switchyard.usage AS u
            (day, trigger, attempts, succeeded, retried, dead, abandoned, handler_ms)
        SELECT day, trigger, attempts, succeeded, retried, dead, abandoned, handler_ms
        FROM counted
        ON CONFLICT (day, trigger) DO UPDATE SET
            attempts = u.attempts + excluded.attempts,
            succeeded = u.succeeded + excluded.succeeded,
            retried = u.retried + excluded.retried,
            dead = u.dead + excluded.dead,
            abandoned = u.abandoned + excluded.abandoned,
            handler_ms = u.handler_ms + excluded.handler_ms
    )";

/// `$1` the locked event ids. Deletes those that still have no unfinished delivery,
/// after rolling up their deliveries' attempts; the statement's snapshot still shows
/// the deliveries that the delete trigger removes at its end. Returns the events,
/// deliveries and attempts deleted.
fn delete_events() -> String {
    format!(
        "WITH gone AS (
            DELETE FROM switchyard.events e
            WHERE e.id = ANY($1)
              AND NOT EXISTS (SELECT 1 FROM switchyard.deliveries d
                              WHERE d.event_id = e.id AND d.status IN {UNFINISHED})
            RETURNING e.id
        ), doomed AS (
            SELECT d.id, d.trigger FROM switchyard.deliveries d JOIN gone ON d.event_id = gone.id
        ), {ROLL_UP}
        SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM doomed),
               (SELECT coalesce(sum(attempts), 0) FROM counted)::bigint"
    )
}

/// `$1` the locked dead letter ids. Deletes those still dead (not replayed meanwhile)
/// after rolling up their attempts. Returns the dead letters and attempts deleted.
fn delete_dead_letters() -> String {
    format!(
        "WITH doomed AS (
            DELETE FROM switchyard.deliveries d
            WHERE d.id = ANY($1) AND d.status = 'dead'
            RETURNING d.id, d.trigger
        ), {ROLL_UP}
        SELECT (SELECT count(*) FROM doomed), 0::bigint,
               (SELECT coalesce(sum(attempts), 0) FROM counted)::bigint"
    )
}

impl PostgresStore {
    pub(super) async fn retention_due_now(
        &self,
        policy: &RetentionConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<RetentionDue>> {
        let mut report = Vec::new();
        for table in RetainedTable::ALL {
            let (time, oldest_sql) = match table {
                RetainedTable::Events => (
                    "e.received_at",
                    "SELECT min(received_at) FROM switchyard.events",
                ),
                RetainedTable::DeadLetters => (
                    "d.updated_at",
                    "SELECT min(updated_at) FROM switchyard.deliveries WHERE status = 'dead'",
                ),
                RetainedTable::RejectedInputs => (
                    "r.received_at",
                    "SELECT min(received_at) FROM switchyard.rejected_inputs",
                ),
            };
            let mut due = 0;
            let mut oldest_due: Option<DateTime<Utc>> = None;
            for (sources, before) in rules(policy, table, now) {
                let from = match table {
                    RetainedTable::Events => expired_events(&sources),
                    RetainedTable::DeadLetters => expired_dead_letters(&sources),
                    RetainedTable::RejectedInputs => expired_rejected_inputs(&sources),
                };
                let sql = format!("SELECT count(*), min({time}) {from}");
                let query = sqlx::query_as(&sql).bind(sources.names()).bind(before);
                let (count, oldest): (i64, Option<DateTime<Utc>>) =
                    query.fetch_one(&self.pool).await?;
                due += count.unsigned_abs();
                oldest_due = earliest(oldest_due, oldest);
            }
            let oldest: Option<DateTime<Utc>> =
                sqlx::query_scalar(oldest_sql).fetch_one(&self.pool).await?;
            report.push(RetentionDue {
                table,
                due,
                oldest_due,
                oldest,
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
        let limit = i64::from(limit);
        for (sources, before) in rules(policy, RetainedTable::Events, now) {
            let pick = format!(
                "SELECT e.id {} ORDER BY e.received_at LIMIT $3 FOR UPDATE OF e SKIP LOCKED",
                expired_events(&sources)
            );
            let (events, deliveries, attempts) = self
                .delete_locked::<Uuid>(&pick, &delete_events(), &sources, before, limit)
                .await?;
            deleted.events += events;
            deleted.deliveries += deliveries;
            deleted.attempts += attempts;
        }
        for (sources, before) in rules(policy, RetainedTable::DeadLetters, now) {
            let pick = format!(
                "SELECT d.id {} ORDER BY d.updated_at LIMIT $3 FOR UPDATE OF d SKIP LOCKED",
                expired_dead_letters(&sources)
            );
            let (dead, _, attempts) = self
                .delete_locked::<i64>(&pick, &delete_dead_letters(), &sources, before, limit)
                .await?;
            deleted.dead_letters += dead;
            deleted.attempts += attempts;
        }
        for (sources, before) in rules(policy, RetainedTable::RejectedInputs, now) {
            let sql = format!(
                "DELETE FROM switchyard.rejected_inputs WHERE id IN (
                    SELECT r.id {} ORDER BY r.received_at LIMIT $3)",
                expired_rejected_inputs(&sources)
            );
            let done = sqlx::query(&sql)
                .bind(sources.names())
                .bind(before)
                .bind(limit)
                .execute(&self.pool)
                .await?;
            deleted.rejected_inputs += done.rows_affected();
        }
        Ok(deleted)
    }

    pub(super) async fn usage_rows(&self) -> Result<Vec<Usage>> {
        let rows = sqlx::query(
            "SELECT day, trigger, attempts, succeeded, retried, dead, abandoned, handler_ms
             FROM switchyard.usage ORDER BY day, trigger",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| -> Result<u64> {
                    Ok(row.try_get::<i64, _>(column)?.unsigned_abs())
                };
                Ok(Usage {
                    day: row.try_get("day")?,
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

    /// Runs `pick` (binding `$1` sources, `$2` before, `$3` limit) to lock ids, then
    /// `delete` on them, in one transaction. Returns the three counts `delete` selects.
    async fn delete_locked<Id>(
        &self,
        pick: &str,
        delete: &str,
        sources: &Sources<'_>,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<(u64, u64, u64)>
    where
        Id: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> + Send + Unpin,
        Vec<Id>: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
    {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Id> = sqlx::query_scalar(pick)
            .bind(sources.names())
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            return Ok((0, 0, 0));
        }
        let row = sqlx::query(delete).bind(ids).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        let count = |at: usize| -> Result<u64> { Ok(row.try_get::<i64, _>(at)?.unsigned_abs()) };
        Ok((count(0)?, count(1)?, count(2)?))
    }
}
