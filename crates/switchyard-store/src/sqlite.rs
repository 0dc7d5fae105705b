//! The SQLite backend: the embedded default, one database file per installation.
//!
//! The file runs in WAL mode with `synchronous = FULL`, so a committed append survives
//! a power loss. Writers take the write lock up front (`BEGIN IMMEDIATE`, or a single
//! writing statement) and wait for each other through `busy_timeout`, so transactions
//! never fail trying to upgrade a read lock.
//!
//! Values are stored as text: timestamps in the fixed-width UTC form
//! `2024-05-01T12:00:00.000000Z` (so comparing the text compares the times), UUIDs
//! hyphenated, and `data` as JSON. The current time comes from Rust and is bound, never
//! from SQLite's date functions.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, Transaction};
use switchyard_core::Event;
use switchyard_core::config::redact_url;
use uuid::Uuid;

use crate::migrations;
use crate::rows::{self, LEASE_EXPIRED};
use crate::{
    Appended, AttemptOutcome, AttemptRecord, Claimed, DeadLetter, DeadQuery, DeliveryDetail,
    DeliveryStatus, EventDetail, EventQuery, EventSummary, Finished, Lease, NewDelivery, NewEvent,
    QueueStats, Result, Store, StoreError,
};

/// The columns of `events` aliased `e`, in the order [`event_from_row`] reads.
macro_rules! event_columns {
    () => {
        "e.id, e.source_name, e.source, e.type, e.subject, e.time, e.datacontenttype, e.data, e.data_base64, \
         e.partitionkey, e.traceparent, e.dedupe_key, e.received_at"
    };
}

/// The columns of `deliveries` that [`delivery_from_row`] reads.
macro_rules! delivery_columns {
    () => {
        "id, event_id, trigger, status, attempts, run_at, created_at, updated_at, ordering_key, replay_of, last_error"
    };
}

/// Not held back by its ordering key: no other delivery of the same trigger and key is
/// running, and no earlier one is pending.
macro_rules! ordering_clear {
    () => {
        "(d.ordering_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM deliveries o
            WHERE o.trigger = d.trigger AND o.ordering_key = d.ordering_key AND o.id <> d.id
              AND (o.status = 'running' OR (o.status = 'pending' AND o.id < d.id))))"
    };
}

const INSERT_EVENT: &str = "
    INSERT INTO events (id, source_name, source, type, subject, time, datacontenttype, data, data_base64,
                        partitionkey, traceparent, dedupe_key, received_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
    ON CONFLICT DO NOTHING";

const INSERT_DELIVERY: &str = "
    INSERT INTO deliveries (event_id, trigger, ordering_key, replay_of, run_at, created_at, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)
    RETURNING id";

/// One writing statement, so SQLite runs it atomically under the write lock; the
/// non-correlated `IN (SELECT ...)` is evaluated once, before any row changes.
const CLAIM: &str = concat!(
    "
    UPDATE deliveries
    SET status = 'running', lease_token = ?1, lease_expires_at = ?2, claimed_at = ?3,
        attempts = attempts + 1, updated_at = ?3
    WHERE id IN (
        SELECT d.id FROM deliveries d
        WHERE d.status = 'pending' AND d.run_at <= ?3 AND d.trigger IN (SELECT value FROM json_each(?4)) AND ",
    ordering_clear!(),
    "
        ORDER BY d.run_at, d.id
        LIMIT ?5)
    RETURNING id, event_id, trigger, attempts, created_at, claimed_at, run_at"
);

const FINISH: &str = "
    UPDATE deliveries
    SET status = ?3, run_at = coalesce(?4, run_at), last_error = ?5, lease_token = NULL,
        lease_expires_at = NULL, updated_at = ?6
    WHERE id = ?1 AND lease_token = ?2 AND status = 'running'
    RETURNING attempts";

const INSERT_ATTEMPT: &str = "
    INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, outcome, error)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT DO NOTHING";

const NEXT_RUN_AT: &str = concat!(
    "SELECT min(d.run_at) FROM deliveries d
     WHERE d.status = 'pending' AND d.trigger IN (SELECT value FROM json_each(?1)) AND ",
    ordering_clear!()
);

const DEAD_FILTER: &str =
    "d.status = 'dead' AND (?1 IS NULL OR d.trigger = ?1) AND (?2 IS NULL OR d.updated_at >= ?2)";

/// The store in a SQLite database file (or in memory, for tests and trials).
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens, creating it if missing, the database `url` names: `sqlite://PATH`,
    /// `sqlite:PATH` or `sqlite::memory:`.
    ///
    /// An in-memory database lives in a single connection that is never closed, so it
    /// lasts as long as the store. Fails with [`StoreError::Invalid`] if the URL does
    /// not parse and [`StoreError::Unavailable`] if the file cannot be opened. Does not
    /// migrate.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| {
                StoreError::Invalid(format!("bad SQLite URL {:?}: {error}", redact_url(url)))
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        }
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
        Ok(Self { pool })
    }

    /// Starts a transaction that holds the write lock from its first statement.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    /// Migrates inside one `BEGIN IMMEDIATE` transaction, so a second process waits for
    /// the first and then finds the schema current.
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.write().await?;
        migrations::run(migrations::SQLITE, &mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn append(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = timestamp(Utc::now());
        let mut tx = self.write().await?;
        let mut results = Vec::with_capacity(batch.len());
        for item in batch {
            let event = &item.event;
            let id = event.id.hyphenated().to_string();
            let data = event.data.as_ref().map(serde_json::Value::to_string);
            let inserted = sqlx::query(INSERT_EVENT)
                .bind(&id)
                .bind(&event.source_name)
                .bind(&event.source)
                .bind(&event.ty)
                .bind(&event.subject)
                .bind(timestamp(event.time))
                .bind(&event.datacontenttype)
                .bind(data)
                .bind(&event.data_base64)
                .bind(&event.partitionkey)
                .bind(&event.traceparent)
                .bind(&event.dedupe_key)
                .bind(timestamp(event.received_at))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if inserted {
                for delivery in &item.deliveries {
                    insert_delivery(&mut tx, &id, delivery, None, &now).await?;
                }
                results.push(Appended::Created(event.id));
                continue;
            }
            // Not inserted: its dedupe key exists, or else its id does.
            let original: Option<String> = match &event.dedupe_key {
                Some(key) => {
                    sqlx::query_scalar(
                        "SELECT id FROM events WHERE source_name = ?1 AND dedupe_key = ?2",
                    )
                    .bind(&event.source_name)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => None,
            };
            let original = original
                .as_deref()
                .map(uuid)
                .transpose()?
                .unwrap_or(event.id);
            results.push(Appended::Duplicate(original));
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn claim(
        &self,
        triggers: &[String],
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        if triggers.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let token = Uuid::new_v4();
        let claimed = sqlx::query(CLAIM)
            .bind(token.hyphenated().to_string())
            .bind(timestamp(lease_end(now, lease)?))
            .bind(timestamp(now))
            .bind(json_list(triggers))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }

        let mut event_ids: Vec<String> = claimed
            .iter()
            .map(|row| row.try_get("event_id"))
            .collect::<Result<_, _>>()?;
        event_ids.sort_unstable();
        event_ids.dedup();
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events e WHERE e.id IN (SELECT value FROM json_each(?1))"
        );
        let events: HashMap<Uuid, Event> = sqlx::query(sql)
            .bind(json_list(&event_ids))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| event_from_row(row).map(|event| (event.id, event)))
            .collect::<Result<_>>()?;

        let mut out = Vec::with_capacity(claimed.len());
        let mut order = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let event_id = uuid(row.try_get("event_id")?)?;
            let event = events.get(&event_id).cloned().ok_or_else(|| {
                StoreError::Invalid(format!(
                    "claimed a delivery of event {event_id}, which does not exist"
                ))
            })?;
            let id: i64 = row.try_get("id")?;
            order.push((timestamp_from(row, "run_at")?, id));
            out.push(Claimed {
                lease: Lease {
                    delivery_id: id,
                    token,
                },
                trigger: row.try_get("trigger")?,
                attempt: rows::count(row.try_get("attempts")?),
                created_at: timestamp_from(row, "created_at")?,
                claimed_at: timestamp_from(row, "claimed_at")?,
                event,
            });
        }
        // RETURNING gives rows in no particular order.
        let mut ordered: Vec<_> = order.into_iter().zip(out).collect();
        ordered.sort_by_key(|(key, _)| *key);
        Ok(ordered.into_iter().map(|(_, claimed)| claimed).collect())
    }

    async fn heartbeat(&self, leases: &[Lease], lease: Duration) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        let expires = timestamp(lease_end(Utc::now(), lease)?);
        let mut tx = self.write().await?;
        let mut extended = 0;
        for held in leases {
            extended += sqlx::query(
                "UPDATE deliveries SET lease_expires_at = ?1 WHERE id = ?2 AND lease_token = ?3 AND status = 'running'",
            )
            .bind(&expires)
            .bind(held.delivery_id)
            .bind(held.token.hyphenated().to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(extended)
    }

    async fn finish(&self, results: &[Finished]) -> Result<Vec<bool>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let mut tx = self.write().await?;
        let mut accepted = Vec::with_capacity(results.len());
        for result in results {
            let status = rows::status_after(result.outcome);
            let run_at = (status == DeliveryStatus::Pending)
                .then(|| timestamp(result.retry_at.unwrap_or(now)));
            let attempt: Option<i64> = sqlx::query_scalar(FINISH)
                .bind(result.lease.delivery_id)
                .bind(result.lease.token.hyphenated().to_string())
                .bind(status.as_str())
                .bind(run_at)
                .bind(&result.error)
                .bind(timestamp(now))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(attempt) = attempt {
                sqlx::query(INSERT_ATTEMPT)
                    .bind(result.lease.delivery_id)
                    .bind(attempt)
                    .bind(timestamp(result.started_at))
                    .bind(result.duration_ms)
                    .bind(result.outcome.as_str())
                    .bind(&result.error)
                    .execute(&mut *tx)
                    .await?;
            }
            accepted.push(attempt.is_some());
        }
        tx.commit().await?;
        for (result, &ok) in results.iter().zip(&accepted) {
            if !ok {
                rows::warn_refused(result);
            }
        }
        Ok(accepted)
    }

    async fn release(&self, leases: &[Lease]) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        let now = timestamp(Utc::now());
        let mut tx = self.write().await?;
        let mut released = 0;
        for held in leases {
            released += sqlx::query(
                "UPDATE deliveries
                 SET status = 'pending', attempts = attempts - 1, lease_token = NULL, lease_expires_at = NULL,
                     updated_at = ?1
                 WHERE id = ?2 AND lease_token = ?3 AND status = 'running'",
            )
            .bind(&now)
            .bind(held.delivery_id)
            .bind(held.token.hyphenated().to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn reclaim_expired(&self) -> Result<u64> {
        let now = Utc::now();
        let now_text = timestamp(now);
        let mut tx = self.write().await?;
        let expired = sqlx::query(
            "SELECT id, attempts, claimed_at FROM deliveries WHERE status = 'running' AND lease_expires_at < ?1",
        )
        .bind(&now_text)
        .fetch_all(&mut *tx)
        .await?;
        for row in &expired {
            let id: i64 = row.try_get("id")?;
            let claimed_at = match row.try_get::<Option<String>, _>("claimed_at")? {
                Some(text) => parse_timestamp(&text)?,
                None => now,
            };
            sqlx::query(INSERT_ATTEMPT)
                .bind(id)
                .bind(row.try_get::<i64, _>("attempts")?)
                .bind(timestamp(claimed_at))
                .bind((now - claimed_at).num_milliseconds().max(0))
                .bind(AttemptOutcome::Abandoned.as_str())
                .bind(LEASE_EXPIRED)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE deliveries
                 SET status = 'pending', run_at = ?1, lease_token = NULL, lease_expires_at = NULL, updated_at = ?1
                 WHERE id = ?2",
            )
            .bind(&now_text)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(expired.len() as u64)
    }

    /// Deliveries held back by their ordering key are left out: they become runnable
    /// when the delivery ahead of them finishes.
    async fn next_run_at(&self, triggers: &[String]) -> Result<Option<DateTime<Utc>>> {
        if triggers.is_empty() {
            return Ok(None);
        }
        let earliest: Option<String> = sqlx::query_scalar(NEXT_RUN_AT)
            .bind(json_list(triggers))
            .fetch_one(&self.pool)
            .await?;
        earliest.as_deref().map(parse_timestamp).transpose()
    }

    /// SQLite has no cross-process signal: this waits forever, and the engine relies on
    /// its in-process wake-up and on `next_run_at`. Cancellation safe.
    async fn wait_for_work(&self) -> Result<()> {
        std::future::pending().await
    }

    async fn add_deliveries(
        &self,
        event_id: Uuid,
        deliveries: &[NewDelivery],
        replay_of: Option<i64>,
    ) -> Result<Vec<i64>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let now = timestamp(Utc::now());
        let id = event_id.hyphenated().to_string();
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM events WHERE id = ?1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::Invalid(format!(
                "event {event_id} does not exist"
            )));
        }
        let mut ids = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            ids.push(insert_delivery(&mut tx, &id, delivery, replay_of, &now).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>> {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT e.id, e.source_name, e.type, e.subject, e.received_at,
                    count(d.id) AS deliveries,
                    coalesce(sum(d.status = 'succeeded'), 0) AS succeeded,
                    coalesce(sum(d.status IN ('pending', 'running')), 0) AS pending,
                    coalesce(sum(d.status = 'dead'), 0) AS dead
             FROM (SELECT e.id, e.source_name, e.type, e.subject, e.received_at FROM events e WHERE 1",
        );
        if let Some(source) = &query.source {
            sql.push(" AND e.source_name = ").push_bind(source);
        }
        if let Some(ty) = &query.ty {
            sql.push(" AND e.type = ").push_bind(ty);
        }
        if query.trigger.is_some() || query.status.is_some() {
            sql.push(" AND EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id");
            if let Some(trigger) = &query.trigger {
                sql.push(" AND x.trigger = ").push_bind(trigger);
            }
            if let Some(status) = query.status {
                sql.push(" AND x.status = ").push_bind(status.as_str());
            }
            sql.push(")");
        }
        if let Some(since) = query.since {
            sql.push(" AND e.received_at >= ")
                .push_bind(timestamp(since));
        }
        if let Some(after) = query.after {
            sql.push(" AND e.id > ")
                .push_bind(after.hyphenated().to_string());
        }
        let order = if query.after.is_some() {
            " ORDER BY e.id"
        } else {
            " ORDER BY e.id DESC"
        };
        sql.push(order);
        sql.push(" LIMIT ")
            .push_bind(rows::limit(query.limit).unwrap_or(-1));
        sql.push(") e LEFT JOIN deliveries d ON d.event_id = e.id GROUP BY e.id");
        sql.push(order);

        let found = sql.build().fetch_all(&self.pool).await?;
        found
            .iter()
            .map(|row| {
                Ok(EventSummary {
                    id: uuid(row.try_get("id")?)?,
                    source_name: row.try_get("source_name")?,
                    ty: row.try_get("type")?,
                    subject: row.try_get("subject")?,
                    received_at: timestamp_from(row, "received_at")?,
                    deliveries: rows::count(row.try_get("deliveries")?),
                    succeeded: rows::count(row.try_get("succeeded")?),
                    pending: rows::count(row.try_get("pending")?),
                    dead: rows::count(row.try_get("dead")?),
                })
            })
            .collect()
    }

    async fn get_event(&self, id: Uuid) -> Result<Option<EventDetail>> {
        let id_text = id.hyphenated().to_string();
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events e WHERE e.id = ?1"
        );
        let Some(row) = sqlx::query(sql)
            .bind(&id_text)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let event = event_from_row(&row)?;
        let sql = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE event_id = ?1 ORDER BY id"
        );
        let mut deliveries = sqlx::query(sql)
            .bind(&id_text)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        let attempts = sqlx::query(
            "SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.outcome, a.error
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.event_id = ?1
             ORDER BY a.delivery_id, a.attempt",
        )
        .bind(&id_text)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attempt_from_row)
        .collect::<Result<Vec<_>>>()?;
        rows::attach_attempts(&mut deliveries, attempts);
        Ok(Some(EventDetail {
            source_name: event.source_name.clone(),
            received_at: event.received_at,
            dedupe_key: event.dedupe_key.clone(),
            event,
            deliveries,
        }))
    }

    async fn events_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        source: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events e
             WHERE e.received_at >= ?1 AND e.received_at < ?2 AND (?3 IS NULL OR e.source_name = ?3)
             ORDER BY e.received_at, e.id
             LIMIT ?4"
        );
        sqlx::query(sql)
            .bind(timestamp(since))
            .bind(timestamp(until))
            .bind(source)
            .bind(rows::limit(limit).unwrap_or(-1))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn list_dead(&self, query: &DeadQuery) -> Result<Vec<DeadLetter>> {
        let sql = format!(
            "SELECT d.id, d.event_id, d.trigger, e.source_name, e.type, d.attempts, d.last_error, d.updated_at
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE {DEAD_FILTER}
             ORDER BY d.updated_at DESC, d.id DESC
             LIMIT ?3"
        );
        sqlx::query(&sql)
            .bind(query.trigger.as_deref())
            .bind(query.since.map(timestamp))
            .bind(rows::limit(query.limit).unwrap_or(-1))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(DeadLetter {
                    delivery_id: row.try_get("id")?,
                    event_id: uuid(row.try_get("event_id")?)?,
                    trigger: row.try_get("trigger")?,
                    source_name: row.try_get("source_name")?,
                    ty: row.try_get("type")?,
                    attempts: rows::count(row.try_get("attempts")?),
                    last_error: row.try_get("last_error")?,
                    died_at: timestamp_from(row, "updated_at")?,
                })
            })
            .collect()
    }

    async fn get_delivery(&self, id: i64) -> Result<Option<DeliveryDetail>> {
        let sql = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE id = ?1"
        );
        let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut delivery = delivery_from_row(&row)?;
        delivery.attempt_log = sqlx::query(
            "SELECT delivery_id, attempt, started_at, duration_ms, outcome, error
             FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attempt_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(delivery))
    }

    async fn replay_dead(&self, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = timestamp(Utc::now());
        let mut tx = self.write().await?;
        let mut created = Vec::new();
        for &id in ids {
            let old = sqlx::query(
                "UPDATE deliveries SET status = 'replayed', updated_at = ?1 WHERE id = ?2 AND status = 'dead'
                 RETURNING event_id, trigger, ordering_key",
            )
            .bind(&now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(old) = old {
                let event_id: String = old.try_get("event_id")?;
                let delivery = NewDelivery {
                    trigger: old.try_get("trigger")?,
                    ordering_key: old.try_get("ordering_key")?,
                };
                created.push(insert_delivery(&mut tx, &event_id, &delivery, Some(id), &now).await?);
            }
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn purge_dead(&self, query: &DeadQuery) -> Result<u64> {
        let sql = format!(
            "DELETE FROM deliveries WHERE id IN (
                 SELECT d.id FROM deliveries d WHERE {DEAD_FILTER}
                 ORDER BY d.updated_at DESC, d.id DESC LIMIT ?3)"
        );
        let done = sqlx::query(&sql)
            .bind(query.trigger.as_deref())
            .bind(query.since.map(timestamp))
            .bind(rows::limit(query.limit).unwrap_or(-1))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let now = Utc::now();
        let per_trigger = |rows: Vec<SqliteRow>| -> Result<Vec<(String, u64)>> {
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get(0)?,
                        u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
                    ))
                })
                .collect()
        };
        let depth = sqlx::query(
            "SELECT trigger, count(*) FROM deliveries WHERE status IN ('pending', 'running') GROUP BY trigger ORDER BY trigger",
        )
        .fetch_all(&self.pool)
        .await?;
        let dead = sqlx::query("SELECT trigger, count(*) FROM deliveries WHERE status = 'dead' GROUP BY trigger ORDER BY trigger")
            .fetch_all(&self.pool)
            .await?;
        let oldest: Option<String> = sqlx::query_scalar(
            "SELECT min(run_at) FROM deliveries WHERE status = 'pending' AND run_at <= ?1",
        )
        .bind(timestamp(now))
        .fetch_one(&self.pool)
        .await?;
        let oldest_pending_secs = match oldest {
            Some(text) => {
                (now - parse_timestamp(&text)?)
                    .num_microseconds()
                    .unwrap_or(i64::MAX) as f64
                    / 1e6
            }
            None => 0.0,
        };
        Ok(QueueStats {
            depth: per_trigger(depth)?,
            oldest_pending_secs: oldest_pending_secs.max(0.0),
            dead: per_trigger(dead)?,
        })
    }
}

async fn insert_delivery(
    conn: &mut SqliteConnection,
    event_id: &str,
    delivery: &NewDelivery,
    replay_of: Option<i64>,
    now: &str,
) -> Result<i64> {
    Ok(sqlx::query_scalar(INSERT_DELIVERY)
        .bind(event_id)
        .bind(&delivery.trigger)
        .bind(&delivery.ordering_key)
        .bind(replay_of)
        .bind(now)
        .fetch_one(conn)
        .await?)
}

/// The stored form of a timestamp: fixed-width UTC with microseconds, so that text
/// order is time order.
fn timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            StoreError::Invalid(format!(
                "stored timestamp {text:?} is not RFC 3339: {error}"
            ))
        })
}

fn timestamp_from(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    parse_timestamp(&row.try_get::<String, _>(column)?)
}

fn uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text)
        .map_err(|error| StoreError::Invalid(format!("stored id {text:?} is not a UUID: {error}")))
}

/// When a lease taken at `now` for `lease` runs out.
fn lease_end(now: DateTime<Utc>, lease: Duration) -> Result<DateTime<Utc>> {
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .ok_or_else(|| StoreError::Invalid(format!("lease of {lease:?} is too long")))
}

/// A JSON array of strings, for `json_each` in `IN (SELECT value FROM json_each(?))`.
fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// Reads the columns [`event_columns!`] selects.
fn event_from_row(row: &SqliteRow) -> Result<Event> {
    let id: String = row.try_get("id")?;
    let data = row
        .try_get::<Option<String>, _>("data")?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|error| StoreError::Invalid(format!("event {id} data is not JSON: {error}")))?;
    Ok(Event {
        specversion: "1.0".to_owned(),
        id: uuid(&id)?,
        source: row.try_get("source")?,
        ty: row.try_get("type")?,
        subject: row.try_get("subject")?,
        time: timestamp_from(row, "time")?,
        datacontenttype: row.try_get("datacontenttype")?,
        data,
        data_base64: row.try_get("data_base64")?,
        partitionkey: row.try_get("partitionkey")?,
        traceparent: row.try_get("traceparent")?,
        source_name: row.try_get("source_name")?,
        dedupe_key: row.try_get("dedupe_key")?,
        received_at: timestamp_from(row, "received_at")?,
    })
}

/// Reads the columns [`delivery_columns!`] selects, with an empty attempt log.
fn delivery_from_row(row: &SqliteRow) -> Result<DeliveryDetail> {
    Ok(DeliveryDetail {
        id: row.try_get("id")?,
        event_id: uuid(row.try_get("event_id")?)?,
        trigger: row.try_get("trigger")?,
        status: rows::status(row.try_get("status")?)?,
        attempts: rows::count(row.try_get("attempts")?),
        run_at: timestamp_from(row, "run_at")?,
        created_at: timestamp_from(row, "created_at")?,
        updated_at: timestamp_from(row, "updated_at")?,
        ordering_key: row.try_get("ordering_key")?,
        replay_of: row.try_get("replay_of")?,
        last_error: row.try_get("last_error")?,
        attempt_log: Vec::new(),
    })
}

fn attempt_from_row(row: &SqliteRow) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        delivery_id: row.try_get("delivery_id")?,
        attempt: rows::count(row.try_get("attempt")?),
        started_at: timestamp_from(row, "started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        outcome: rows::outcome(row.try_get("outcome")?)?,
        error: row.try_get("error")?,
    })
}
