//! The SQLite backend: the embedded default, one database file per installation.
//!
//! The file runs in WAL mode with `synchronous = FULL`, so a committed append survives
//! a power loss. Writers take the write lock up front (`BEGIN IMMEDIATE`, or a single
//! writing statement), so transactions never fail trying to upgrade a read lock. The
//! writers of one process queue on the store's write gate first; those of different
//! processes wait for each other through `busy_timeout`.
//!
//! Values are stored as text: timestamps in the fixed-width UTC form
//! `2024-05-01T12:00:00.000000Z` (so comparing the text compares the times), UUIDs
//! hyphenated, and `data` as JSON. The current time comes from Rust and is bound, never
//! from SQLite's date functions.

mod append;
mod retention;
mod sql;
mod values;
mod write;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection};
use switchyard_core::Event;
use switchyard_core::config::{RetentionConfig, redact_url};
use tokio::sync::Mutex;
use uuid::Uuid;

use self::append::append_in;
use self::values::{
    json_list, lease_end, parse_timestamp, parse_uuid, timestamp, timestamp_at, uuid_text,
};
use crate::migrations;
use crate::queue::{self, LEASE_EXPIRED};
use crate::read;
use crate::storable;
use crate::{
    Appended, AppliedMigration, AttemptOutcome, Claimed, DeadLetter, DeadQuery, DeliveryDetail,
    DeliveryStatus, EventDetail, EventQuery, EventSummary, Finished, Lease, NewDelivery, NewEvent,
    QueueStats, RejectedInput, Result, RetentionDeleted, RetentionDue, Store, StoreError, Usage,
};

/// The store in a SQLite database file (or in memory, for tests and trials).
///
/// Claims and heartbeats go through a connection of their own with `synchronous =
/// NORMAL`: their commits do not wait for the WAL to reach the disk. Nothing is
/// acknowledged on the strength of a lease alone, and the WAL is one file written in
/// order, so the next `FULL` commit on another connection (the `finish` that records
/// an attempt, say) syncs the claim with it. A power loss can forget a claim whose
/// attempt was not recorded; that delivery is pending again and runs again.
///
/// Every write in this process first takes the store's write gate, so writers queue
/// on it in order and each starts the moment the one before it ends. Left to SQLite,
/// a writer that finds the file locked sleeps in its busy handler (1, 2, 5, 10 ms and
/// up between tries) however soon the lock is free; a claim and a finish racing for
/// the lock stalled a drain that way. Other processes still wait on `busy_timeout`.
pub struct SqliteStore {
    pool: SqlitePool,
    leases: SqlitePool,
    gate: Mutex<()>,
}

/// How long a statement waits for a connection, the write gate or the file's lock
/// before the store answers [`StoreError::Unavailable`].
const WAIT: Duration = Duration::from_secs(5);

/// Options for a pool of file connections that replaces a connection left inside a
/// transaction instead of handing it out again.
///
/// When a `COMMIT` fails because the disk is full, SQLite rolls the transaction back
/// itself; the `ROLLBACK` that follows then fails, and the connection still counts as
/// inside a transaction, so every later `BEGIN` on it would fail too, long after space
/// was freed. Checking at acquire time (after the pool's own test on release has let
/// any queued rollback run) closes such a connection and opens a fresh one, so the
/// store heals without a restart.
fn healing_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .acquire_timeout(WAIT)
        .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
}

impl SqliteStore {
    /// Opens, creating it if missing, the database `url` names: `sqlite://PATH`,
    /// `sqlite:PATH` or `sqlite::memory:`.
    ///
    /// A file gets a pool of 4 connections; an in-memory database lives in a single
    /// connection that is never closed, so it lasts as long as the store. Fails with
    /// [`StoreError::Invalid`] if the URL does not parse and
    /// [`StoreError::Unavailable`] if the file cannot be opened. Does not migrate.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, true).await
    }

    /// Opens like [`open`](Self::open) a database that must exist: a missing file is
    /// [`StoreError::Invalid`] naming it, and is not created.
    pub async fn open_existing(url: &str) -> Result<Self> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, create: bool) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| {
                StoreError::Invalid(format!("bad SQLite URL {:?}: {error}", redact_url(url)))
            })?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(WAIT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !create && !in_memory && !options.get_filename().exists() {
            return Err(StoreError::Invalid(format!(
                "the SQLite store {} does not exist (check the store URL, or create it \
                 with `switchyard migrate`)",
                options.get_filename().display()
            )));
        }
        if in_memory {
            // One connection holds the whole database, so everything shares it.
            let pool = SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(WAIT)
                .connect_with(options)
                .await?;
            return Ok(Self {
                leases: pool.clone(),
                pool,
                gate: Mutex::new(()),
            });
        }
        let pool = healing_pool()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        let leases = healing_pool()
            .max_connections(1)
            .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
        Ok(Self {
            pool,
            leases,
            gate: Mutex::new(()),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    /// Migrates inside one `BEGIN IMMEDIATE` transaction, so a second process waits for
    /// the first and then finds the schema current.
    async fn migrate(&self) -> Result<Vec<AppliedMigration>> {
        let mut tx = self.write().await?;
        let applied = migrations::run(migrations::SQLITE, &mut *tx).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Reads sqlx's bookkeeping table, if there is one, in one read transaction.
    async fn check_schema(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let exists: bool = sqlx::query_scalar(sql::MIGRATIONS_TABLE_EXISTS)
            .fetch_one(&mut *tx)
            .await?;
        let recorded: Option<Vec<migrations::Recorded>> = if exists {
            Some(
                sqlx::query_as(sql::RECORDED_MIGRATIONS)
                    .fetch_all(&mut *tx)
                    .await?,
            )
        } else {
            None
        };
        tx.commit().await?;
        migrations::check(migrations::SQLITE, recorded.as_deref())
    }

    /// Goes through the write gate and a write transaction like every other write,
    /// so it fails when they would.
    async fn probe_write(&self) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql::PROBE_WRITE)
            .bind(timestamp(Utc::now()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn append(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        let batch = storable::events(batch);
        let batch = &*batch;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let (results, _) = append_in(&mut tx, batch, None).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn append_claiming(
        &self,
        batch: &[NewEvent],
        lease: Duration,
    ) -> Result<(Vec<Appended>, Vec<Claimed>)> {
        let batch = storable::events(batch);
        let batch = &*batch;
        if batch.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut tx = self.write().await?;
        let appended = append_in(&mut tx, batch, Some(lease)).await?;
        tx.commit().await?;
        Ok(appended)
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
        let gate = self.gate().await?;
        let claimed = sqlx::query(sql::CLAIM)
            .bind(uuid_text(token))
            .bind(timestamp(lease_end(now, lease)?))
            .bind(timestamp(now))
            .bind(json_list(triggers))
            .bind(i64::from(limit))
            .fetch_all(&self.leases)
            .await?;
        drop(gate);
        if claimed.is_empty() {
            return Ok(Vec::new());
        }

        let mut event_ids: Vec<String> = claimed
            .iter()
            .map(|row| row.try_get("event_id"))
            .collect::<Result<_, _>>()?;
        event_ids.sort_unstable();
        event_ids.dedup();
        let events: HashMap<Uuid, Event> = sqlx::query(sql::EVENTS_BY_ID)
            .bind(json_list(&event_ids))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| read::event::<Sqlite>(row).map(|event| (event.switchyard_id, event)))
            .collect::<Result<_>>()?;

        let mut out = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let event_id = parse_uuid(row.try_get("event_id")?)?;
            let event = events.get(&event_id).cloned().ok_or_else(|| {
                StoreError::Invalid(format!(
                    "claimed a delivery of event {event_id}, which does not exist"
                ))
            })?;
            let id: i64 = row.try_get("id")?;
            let claim = Claimed {
                lease: Lease {
                    delivery_id: id,
                    token,
                },
                trigger: row.try_get("trigger")?,
                attempt: queue::count(row.try_get("attempts")?),
                created_at: timestamp_at(row, "created_at")?,
                claimed_at: timestamp_at(row, "claimed_at")?,
                event,
            };
            out.push(((timestamp_at(row, "run_at")?, id), claim));
        }
        // RETURNING gives rows in no particular order.
        out.sort_by_key(|(order, _)| *order);
        Ok(out.into_iter().map(|(_, claim)| claim).collect())
    }

    async fn heartbeat(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let expires = timestamp(lease_end(Utc::now(), lease)?);
        let mut tx = self.write_on(&self.leases).await?;
        let mut held = Vec::with_capacity(leases.len());
        for lease in leases {
            let extended = sqlx::query(sql::HEARTBEAT)
                .bind(&expires)
                .bind(lease.delivery_id)
                .bind(uuid_text(lease.token))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            held.push(extended == 1);
        }
        tx.commit().await?;
        Ok(held)
    }

    /// At most three statements whatever the batch size, with the results passed as
    /// one JSON array: find which leases are still held, record the retried attempts
    /// (when there are any), then move those deliveries, writing each final attempt
    /// on its delivery's row.
    async fn finish(&self, results: &[Finished]) -> Result<Vec<bool>> {
        let results = storable::results(results);
        let results = &*results;
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let batch: Vec<serde_json::Value> = results
            .iter()
            .map(|result| {
                let status = queue::status_after(result.outcome);
                let run_at = (status == DeliveryStatus::Pending)
                    .then(|| timestamp(result.retry_at.unwrap_or(now)));
                serde_json::json!({
                    "id": result.lease.delivery_id,
                    "token": uuid_text(result.lease.token),
                    "status": status.as_str(),
                    "run_at": run_at,
                    "error": result.error,
                    "started_at": timestamp(result.started_at),
                    "duration_ms": result.duration_ms,
                    "outcome": result.outcome.as_str(),
                    "output": result.output,
                })
            })
            .collect();
        let batch = serde_json::Value::Array(batch).to_string();
        let mut tx = self.write().await?;
        let held: HashSet<i64> = sqlx::query_scalar(sql::HELD_LEASES)
            .bind(&batch)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let retries = results
            .iter()
            .any(|result| queue::status_after(result.outcome) == DeliveryStatus::Pending);
        if retries {
            sqlx::query(sql::RECORD_ATTEMPTS)
                .bind(&batch)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(sql::FINISH)
            .bind(&batch)
            .bind(timestamp(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let accepted: Vec<bool> = (0..results.len())
            .map(|position| i64::try_from(position).is_ok_and(|key| held.contains(&key)))
            .collect();
        for (result, &ok) in results.iter().zip(&accepted) {
            if !ok {
                queue::warn_refused(result);
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
            released += sqlx::query(sql::RELEASE)
                .bind(&now)
                .bind(held.delivery_id)
                .bind(uuid_text(held.token))
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
        let expired = sqlx::query(sql::EXPIRED_LEASES)
            .bind(&now_text)
            .fetch_all(&mut *tx)
            .await?;
        for row in &expired {
            let id: i64 = row.try_get("id")?;
            let claimed_at = match row.try_get::<Option<String>, _>("claimed_at")? {
                Some(text) => parse_timestamp(&text)?,
                None => now,
            };
            sqlx::query(sql::INSERT_ATTEMPT)
                .bind(id)
                .bind(row.try_get::<i64, _>("attempts")?)
                .bind(timestamp(claimed_at))
                .bind((now - claimed_at).num_milliseconds().max(0))
                .bind(AttemptOutcome::Abandoned.as_str())
                .bind(LEASE_EXPIRED)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::REQUEUE_EXPIRED)
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
        let earliest: Option<String> = sqlx::query_scalar(sql::NEXT_RUN_AT)
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
        let deliveries = storable::deliveries(deliveries);
        let deliveries = &*deliveries;
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let now = timestamp(Utc::now());
        let id = uuid_text(event_id);
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar(sql::EVENT_EXISTS)
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
        read::list_events(&self.pool, query).await
    }

    async fn get_event(&self, id: Uuid) -> Result<Option<EventDetail>> {
        read::get_event(&self.pool, id).await
    }

    async fn events_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        source: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        read::events_between(&self.pool, since, until, source, after, limit).await
    }

    async fn schedule_position(&self, source: &str) -> Result<Option<DateTime<Utc>>> {
        read::schedule_position(&self.pool, source).await
    }

    async fn record_fire(
        &self,
        source: &str,
        fire: Option<&NewEvent>,
        skipped: &[DateTime<Utc>],
        position: DateTime<Utc>,
    ) -> Result<Option<Appended>> {
        let now = timestamp(Utc::now());
        let mut tx = self.write().await?;
        for time in skipped {
            sqlx::query(sql::INSERT_SKIPPED)
                .bind(source)
                .bind(timestamp(*time))
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        let appended = match fire {
            Some(fire) => append_in(&mut tx, &storable::events(std::slice::from_ref(fire)), None)
                .await?
                .0
                .pop(),
            None => None,
        };
        sqlx::query(sql::ADVANCE_SCHEDULE)
            .bind(source)
            .bind(timestamp(position))
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn list_skipped(&self, source: &str, limit: u32) -> Result<Vec<DateTime<Utc>>> {
        read::list_skipped(&self.pool, source, limit).await
    }

    async fn source_position(&self, source: &str) -> Result<Option<serde_json::Value>> {
        read::source_position(&self.pool, source).await
    }

    async fn append_with_position(
        &self,
        source: &str,
        batch: &[NewEvent],
        position: &serde_json::Value,
    ) -> Result<Vec<Appended>> {
        let batch = storable::events(batch);
        let batch = &*batch;
        let mut tx = self.write().await?;
        let (results, _) = append_in(&mut tx, batch, None).await?;
        sqlx::query(sql::SAVE_POSITION)
            .bind(source)
            .bind(position.to_string())
            .bind(timestamp(Utc::now()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn reject_input(
        &self,
        source: &str,
        input_id: &str,
        reason: &str,
        body: &str,
    ) -> Result<bool> {
        let input_id = storable::indexed_key(input_id);
        let reason = storable::text(reason, storable::MAX_ERROR);
        let body = storable::text(body, storable::MAX_REJECTED_BODY);
        let _gate = self.gate().await?;
        let done = sqlx::query(sql::REJECT_INPUT)
            .bind(source)
            .bind(&*input_id)
            .bind(&*reason)
            .bind(&*body)
            .bind(timestamp(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_rejected(&self, source: Option<&str>, limit: u32) -> Result<Vec<RejectedInput>> {
        read::list_rejected(&self.pool, source, limit).await
    }

    async fn list_dead(&self, query: &DeadQuery) -> Result<Vec<DeadLetter>> {
        read::list_dead(&self.pool, query).await
    }

    async fn get_delivery(&self, id: i64) -> Result<Option<DeliveryDetail>> {
        read::get_delivery(&self.pool, id).await
    }

    async fn replay_dead(&self, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = timestamp(Utc::now());
        let mut tx = self.write().await?;
        let mut created = Vec::new();
        for &id in ids {
            let old = sqlx::query(sql::MARK_REPLAYED)
                .bind(&now)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(old) = old {
                let event_id: String = old.try_get("event_id")?;
                let delivery = NewDelivery {
                    trigger: old.try_get("trigger")?,
                    ordering_key: old.try_get("ordering_key")?,
                    claim: false,
                };
                created.push(insert_delivery(&mut tx, &event_id, &delivery, Some(id), &now).await?);
            }
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn purge_dead(&self, query: &DeadQuery) -> Result<u64> {
        let _gate = self.gate().await?;
        read::purge_dead(&self.pool, query).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        let now = Utc::now();
        let depth = read::per_trigger(&self.pool, "pending").await?;
        let dead = read::per_trigger(&self.pool, "dead").await?;
        let oldest: Option<String> = sqlx::query_scalar(sql::OLDEST_RUNNABLE)
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
            depth,
            oldest_pending_secs: oldest_pending_secs.max(0.0),
            dead,
        })
    }

    async fn retention_due(
        &self,
        policy: &RetentionConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<RetentionDue>> {
        self.retention_due_now(policy, now).await
    }

    async fn delete_expired(
        &self,
        policy: &RetentionConfig,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RetentionDeleted> {
        self.delete_expired_batch(policy, now, limit).await
    }

    async fn usage(&self) -> Result<Vec<Usage>> {
        self.usage_rows().await
    }
}

/// Inserts a pending delivery, runnable now. Returns its id.
async fn insert_delivery(
    conn: &mut SqliteConnection,
    event_id: &str,
    delivery: &NewDelivery,
    replay_of: Option<i64>,
    now: &str,
) -> Result<i64> {
    Ok(sqlx::query_scalar(sql::INSERT_DELIVERY)
        .bind(event_id)
        .bind(&delivery.trigger)
        .bind(&delivery.ordering_key)
        .bind(replay_of)
        .bind(now)
        .fetch_one(conn)
        .await?)
}
