//! The Postgres backend, for production and for several Switchyard processes sharing
//! one queue.
//!
//! Every object lives in the `switchyard` schema and every statement names it, so the
//! connections' `search_path` does not matter. Batches travel as arrays that the server
//! unnests, so a batch costs a constant number of round trips however large it is.
//! Claims use `FOR UPDATE SKIP LOCKED`, and `NOTIFY switchyard_work` wakes idle
//! dispatchers in other processes when runnable work appears.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Row};
use switchyard_core::Event;
use switchyard_core::config::redact_url;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::migrations;
use crate::rows::{self, LEASE_EXPIRED};
use crate::{
    Appended, AttemptRecord, Claimed, DeadLetter, DeadQuery, DeliveryDetail, DeliveryStatus,
    EventDetail, EventQuery, EventSummary, Finished, Lease, NewDelivery, NewEvent, QueueStats,
    Result, Store, StoreError,
};

/// The channel `NOTIFY` uses to say runnable work may have appeared.
const WORK_CHANNEL: &str = "switchyard_work";
const NOTIFY_WORK: &str = "SELECT pg_notify('switchyard_work', '')";

/// Serializes the creation of the `switchyard` schema across processes (an arbitrary
/// constant: "SWYDSCHM").
const SCHEMA_LOCK: i64 = 0x5357_5944_5343_484d;

/// The columns of `switchyard.events` aliased `e`, in the order [`event_from_row`] reads.
macro_rules! event_columns {
    () => {
        "e.id, e.source_name, e.source, e.type, e.subject, e.time, e.datacontenttype, e.data, e.data_base64, \
         e.partitionkey, e.traceparent, e.dedupe_key, e.received_at"
    };
}

/// The columns of `switchyard.deliveries` that [`delivery_from_row`] reads.
const DELIVERY_COLUMNS: &str = "id, event_id, trigger, status, attempts, run_at, created_at, updated_at, ordering_key, replay_of, last_error";

/// Held back by its ordering key: another delivery of the same trigger and key is
/// running, or an earlier one is still pending. Checking "running" regardless of id
/// keeps a key to one delivery at a time even when appends commit out of id order.
macro_rules! ordering_clear {
    () => {
        "(d.ordering_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM switchyard.deliveries o
            WHERE o.trigger = d.trigger AND o.ordering_key = d.ordering_key AND o.id <> d.id
              AND (o.status = 'running' OR (o.status = 'pending' AND o.id < d.id))))"
    };
}

const INSERT_EVENTS: &str = "
    INSERT INTO switchyard.events (id, source_name, source, type, subject, time, datacontenttype, data,
                                   data_base64, partitionkey, traceparent, dedupe_key, received_at)
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                         $7::text[], $8::jsonb[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING id";

const FIND_ORIGINALS: &str = "
    SELECT k.source_name, k.dedupe_key, e.id
    FROM UNNEST($1::text[], $2::text[]) AS k(source_name, dedupe_key)
    JOIN switchyard.events e ON e.source_name = k.source_name AND e.dedupe_key = k.dedupe_key";

const INSERT_DELIVERIES: &str = "
    INSERT INTO switchyard.deliveries (event_id, trigger, ordering_key)
    SELECT event_id, trigger, ordering_key
    FROM UNNEST($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS n(event_id, trigger, ordering_key, position)
    ORDER BY position";

const CLAIM: &str = concat!(
    "
    WITH c AS (
        SELECT d.id FROM switchyard.deliveries d
        WHERE d.status = 'pending' AND d.run_at <= now() AND d.trigger = ANY($1) AND ",
    ordering_clear!(),
    "
        ORDER BY d.run_at, d.id
        LIMIT $2
        FOR UPDATE OF d SKIP LOCKED
    ), u AS (
        UPDATE switchyard.deliveries d
        SET status = 'running', lease_token = $3, lease_expires_at = now() + $4 * interval '1 millisecond',
            claimed_at = now(), attempts = d.attempts + 1, updated_at = now()
        FROM c WHERE d.id = c.id
        RETURNING d.id, d.event_id, d.trigger, d.attempts, d.created_at, d.claimed_at, d.run_at
    )
    SELECT u.id AS delivery_id, u.trigger, u.attempts, u.created_at AS delivery_created_at, u.claimed_at, ",
    event_columns!(),
    "
    FROM u JOIN switchyard.events e ON e.id = u.event_id
    ORDER BY u.run_at, u.id"
);

const HEARTBEAT: &str = "
    UPDATE switchyard.deliveries d
    SET lease_expires_at = now() + $3 * interval '1 millisecond'
    FROM UNNEST($1::bigint[], $2::uuid[]) AS l(id, token)
    WHERE d.id = l.id AND d.lease_token = l.token AND d.status = 'running'";

const FINISH: &str = "
    WITH r AS (
        SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[],
                             $6::timestamptz[], $7::bigint[], $8::text[])
            WITH ORDINALITY AS r(id, token, status, run_at, error, started_at, duration_ms, outcome, position)
    ), u AS (
        UPDATE switchyard.deliveries d
        SET status = r.status,
            run_at = CASE WHEN r.status = 'pending' THEN coalesce(r.run_at, now()) ELSE d.run_at END,
            last_error = r.error, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
        FROM r
        WHERE d.id = r.id AND d.lease_token = r.token AND d.status = 'running'
        RETURNING r.position, d.id, d.attempts, d.status, d.ordering_key
    ), recorded AS (
        INSERT INTO switchyard.attempts (delivery_id, attempt, started_at, duration_ms, outcome, error)
        SELECT u.id, u.attempts, r.started_at, r.duration_ms, r.outcome, r.error
        FROM u JOIN r ON r.position = u.position
    )
    SELECT position, status, ordering_key FROM u";

const RELEASE: &str = "
    UPDATE switchyard.deliveries d
    SET status = 'pending', attempts = d.attempts - 1, lease_token = NULL, lease_expires_at = NULL,
        updated_at = now()
    FROM UNNEST($1::bigint[], $2::uuid[]) AS l(id, token)
    WHERE d.id = l.id AND d.lease_token = l.token AND d.status = 'running'";

const RECLAIM_EXPIRED: &str = "
    WITH expired AS (
        SELECT id FROM switchyard.deliveries
        WHERE status = 'running' AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE switchyard.deliveries d
        SET status = 'pending', run_at = now(), lease_token = NULL, lease_expires_at = NULL, updated_at = now()
        FROM expired WHERE d.id = expired.id
        RETURNING d.id, d.attempts, d.claimed_at
    ), recorded AS (
        INSERT INTO switchyard.attempts (delivery_id, attempt, started_at, duration_ms, outcome, error)
        SELECT id, attempts, coalesce(claimed_at, now()),
               coalesce((extract(epoch FROM now() - claimed_at) * 1000)::bigint, 0), 'abandoned', $1
        FROM u
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) FROM u";

const NEXT_RUN_AT: &str = concat!(
    "SELECT min(d.run_at) FROM switchyard.deliveries d WHERE d.status = 'pending' AND d.trigger = ANY($1) AND ",
    ordering_clear!()
);

const ADD_DELIVERIES: &str = "
    INSERT INTO switchyard.deliveries (event_id, trigger, ordering_key, replay_of)
    SELECT $1, trigger, ordering_key, $4
    FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS n(trigger, ordering_key, position)
    ORDER BY position
    RETURNING id";

const EVENTS_BETWEEN: &str = concat!(
    "SELECT ",
    event_columns!(),
    "
    FROM switchyard.events e
    WHERE e.received_at >= $1 AND e.received_at < $2 AND ($3::text IS NULL OR e.source_name = $3)
    ORDER BY e.received_at, e.id
    LIMIT $4"
);

const LIST_DEAD: &str = "
    SELECT d.id, d.event_id, d.trigger, e.source_name, e.type, d.attempts, d.last_error, d.updated_at
    FROM switchyard.deliveries d JOIN switchyard.events e ON e.id = d.event_id
    WHERE d.status = 'dead' AND ($1::text IS NULL OR d.trigger = $1) AND ($2::timestamptz IS NULL OR d.updated_at >= $2)
    ORDER BY d.updated_at DESC, d.id DESC
    LIMIT $3";

const REPLAY_DEAD: &str = "
    WITH old AS (
        UPDATE switchyard.deliveries
        SET status = 'replayed', updated_at = now()
        WHERE id = ANY($1) AND status = 'dead'
        RETURNING id, event_id, trigger, ordering_key
    )
    INSERT INTO switchyard.deliveries (event_id, trigger, ordering_key, replay_of)
    SELECT event_id, trigger, ordering_key, id FROM old ORDER BY id
    RETURNING id";

const PURGE_DEAD: &str = "
    DELETE FROM switchyard.deliveries
    WHERE status = 'dead' AND id IN (
        SELECT d.id FROM switchyard.deliveries d
        WHERE d.status = 'dead' AND ($1::text IS NULL OR d.trigger = $1)
          AND ($2::timestamptz IS NULL OR d.updated_at >= $2)
        ORDER BY d.updated_at DESC, d.id DESC
        LIMIT $3)";

/// The store on a Postgres database, in its `switchyard` schema.
///
/// Cheap to share: it holds a connection pool (up to 20 connections) and, once
/// [`Store::wait_for_work`] has been called, one more dedicated `LISTEN` connection.
pub struct PostgresStore {
    pool: PgPool,
    listener: Mutex<Option<PgListener>>,
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:pass@host/db`).
    ///
    /// Fails with [`StoreError::Invalid`] if the URL does not parse, and with
    /// [`StoreError::Unavailable`] if no connection can be made within 5 seconds.
    /// Does not migrate.
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| {
                StoreError::Invalid(format!("bad Postgres URL {:?}: {error}", redact_url(url)))
            })?
            .application_name("switchyard");
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            listener: Mutex::new(None),
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    /// Creates the `switchyard` schema if needed, then applies the embedded migrations
    /// on a dedicated connection whose `search_path` is `switchyard`, so sqlx's
    /// bookkeeping table lives there too. sqlx holds an advisory lock while migrating,
    /// and schema creation takes its own, so concurrent callers wait for each other.
    async fn migrate(&self) -> Result<()> {
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
        let migrated = migrate_on(&mut conn).await;
        let closed = conn.close().await;
        migrated?;
        closed?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Three statements whatever the batch size: insert the events that are new, look
    /// up the originals of the duplicates, insert the new events' deliveries.
    async fn append(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Within the batch, a repeated id or dedupe key refers to its first occurrence;
        // only first occurrences go to the database.
        let mut repeats: Vec<Option<usize>> = vec![None; batch.len()];
        let mut seen_ids: HashMap<Uuid, usize> = HashMap::new();
        let mut seen_keys: HashMap<(&str, &str), usize> = HashMap::new();
        let mut columns = EventColumns::default();
        for (i, item) in batch.iter().enumerate() {
            let event = &item.event;
            let key = event
                .dedupe_key
                .as_deref()
                .map(|key| (event.source_name.as_str(), key));
            let first = seen_ids
                .get(&event.id)
                .or_else(|| key.and_then(|key| seen_keys.get(&key)))
                .copied();
            match first {
                Some(first) => repeats[i] = Some(first),
                None => {
                    seen_ids.insert(event.id, i);
                    if let Some(key) = key {
                        seen_keys.insert(key, i);
                    }
                    columns.push(event);
                }
            }
        }

        let mut tx = self.pool.begin().await?;
        let inserted: HashSet<Uuid> = columns
            .bind(sqlx::query_scalar(INSERT_EVENTS))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();

        let (names, keys): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .zip(&repeats)
            .filter(|(item, repeat)| repeat.is_none() && !inserted.contains(&item.event.id))
            .filter_map(|(item, _)| {
                Some((
                    item.event.source_name.as_str(),
                    item.event.dedupe_key.as_deref()?,
                ))
            })
            .unzip();
        let mut originals: HashMap<(String, String), Uuid> = HashMap::new();
        if !names.is_empty() {
            let rows = sqlx::query(FIND_ORIGINALS)
                .bind(&names)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                originals.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
            }
        }

        let mut results: Vec<Appended> = Vec::with_capacity(batch.len());
        let (mut event_ids, mut triggers, mut ordering_keys) = (Vec::new(), Vec::new(), Vec::new());
        for (item, repeat) in batch.iter().zip(&repeats) {
            let event = &item.event;
            let result = match *repeat {
                Some(first) => Appended::Duplicate(results[first].id()),
                None if inserted.contains(&event.id) => {
                    for delivery in &item.deliveries {
                        event_ids.push(event.id);
                        triggers.push(delivery.trigger.as_str());
                        ordering_keys.push(delivery.ordering_key.as_deref());
                    }
                    Appended::Created(event.id)
                }
                // Not inserted: its dedupe key exists, or else its id does.
                None => {
                    let original = event
                        .dedupe_key
                        .as_ref()
                        .and_then(|key| originals.get(&(event.source_name.clone(), key.clone())));
                    Appended::Duplicate(original.copied().unwrap_or(event.id))
                }
            };
            results.push(result);
        }

        if !event_ids.is_empty() {
            sqlx::query(INSERT_DELIVERIES)
                .bind(&event_ids)
                .bind(&triggers)
                .bind(&ordering_keys)
                .execute(&mut *tx)
                .await?;
            sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
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
        let token = Uuid::new_v4();
        let rows = sqlx::query(CLAIM)
            .bind(triggers)
            .bind(i64::from(limit))
            .bind(token)
            .bind(rows::lease_millis(lease)?)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    lease: Lease {
                        delivery_id: row.try_get("delivery_id")?,
                        token,
                    },
                    trigger: row.try_get("trigger")?,
                    attempt: rows::count(i64::from(row.try_get::<i32, _>("attempts")?)),
                    created_at: row.try_get("delivery_created_at")?,
                    claimed_at: row.try_get("claimed_at")?,
                    event: event_from_row(row)?,
                })
            })
            .collect()
    }

    async fn heartbeat(&self, leases: &[Lease], lease: Duration) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        let (ids, tokens) = lease_arrays(leases);
        let done = sqlx::query(HEARTBEAT)
            .bind(ids)
            .bind(tokens)
            .bind(rows::lease_millis(lease)?)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// One statement updates every delivery whose lease is still held and records
    /// those attempts; a `NOTIFY` follows when a delivery became pending again or
    /// finished one of an ordering key (which may unblock the key's next delivery).
    async fn finish(&self, results: &[Finished]) -> Result<Vec<bool>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(results.len());
        let mut tokens = Vec::with_capacity(results.len());
        let mut statuses = Vec::with_capacity(results.len());
        let mut run_ats = Vec::with_capacity(results.len());
        let mut errors = Vec::with_capacity(results.len());
        let mut started_ats = Vec::with_capacity(results.len());
        let mut durations = Vec::with_capacity(results.len());
        let mut outcomes = Vec::with_capacity(results.len());
        for result in results {
            ids.push(result.lease.delivery_id);
            tokens.push(result.lease.token);
            statuses.push(rows::status_after(result.outcome).as_str());
            run_ats.push(result.retry_at);
            errors.push(result.error.as_deref());
            started_ats.push(result.started_at);
            durations.push(result.duration_ms);
            outcomes.push(result.outcome.as_str());
        }

        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(FINISH)
            .bind(ids)
            .bind(tokens)
            .bind(statuses)
            .bind(run_ats)
            .bind(errors)
            .bind(started_ats)
            .bind(durations)
            .bind(outcomes)
            .fetch_all(&mut *tx)
            .await?;
        let mut accepted = vec![false; results.len()];
        let mut wake = false;
        for row in &updated {
            let position: i64 = row.try_get("position")?;
            let status: String = row.try_get("status")?;
            let ordering_key: Option<String> = row.try_get("ordering_key")?;
            wake |= status == DeliveryStatus::Pending.as_str() || ordering_key.is_some();
            if let Some(slot) = usize::try_from(position - 1)
                .ok()
                .and_then(|i| accepted.get_mut(i))
            {
                *slot = true;
            }
        }
        if wake {
            sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
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
        let (ids, tokens) = lease_arrays(leases);
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(RELEASE)
            .bind(ids)
            .bind(tokens)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if released > 0 {
            sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn reclaim_expired(&self) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let reclaimed: i64 = sqlx::query_scalar(RECLAIM_EXPIRED)
            .bind(LEASE_EXPIRED)
            .fetch_one(&mut *tx)
            .await?;
        if reclaimed > 0 {
            sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(reclaimed).unwrap_or(0))
    }

    /// Deliveries held back by their ordering key are left out: they become runnable
    /// when the delivery ahead of them finishes, which `finish` signals.
    async fn next_run_at(&self, triggers: &[String]) -> Result<Option<DateTime<Utc>>> {
        if triggers.is_empty() {
            return Ok(None);
        }
        Ok(sqlx::query_scalar(NEXT_RUN_AT)
            .bind(triggers)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Waits for a `NOTIFY switchyard_work` on a dedicated connection that is opened
    /// on the first call and kept. The first call returns as soon as it listens (work
    /// added before then sent no signal it could see), and so does a call during which
    /// the connection was lost and re-established. On an error the connection is
    /// dropped and the error returned; the next call opens a new one. Concurrent
    /// callers take turns: one notification wakes one of them.
    ///
    /// Cancellation safe: notifications that arrive while nobody waits are buffered on
    /// the connection and wake the next call.
    async fn wait_for_work(&self) -> Result<()> {
        let mut guard = self.listener.lock().await;
        if let Some(listener) = guard.as_mut() {
            return match listener.try_recv().await {
                Ok(Some(_)) => {
                    // One wake-up covers every notification already received.
                    while listener.next_buffered().is_some() {}
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => {
                    *guard = None;
                    Err(error.into())
                }
            };
        }
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        *guard = Some(listener);
        Ok(())
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
        let triggers: Vec<&str> = deliveries.iter().map(|d| d.trigger.as_str()).collect();
        let ordering_keys: Vec<Option<&str>> = deliveries
            .iter()
            .map(|d| d.ordering_key.as_deref())
            .collect();
        let mut tx = self.pool.begin().await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(ADD_DELIVERIES)
            .bind(event_id)
            .bind(triggers)
            .bind(ordering_keys)
            .bind(replay_of)
            .fetch_all(&mut *tx)
            .await
            .map_err(|error| missing_event(error, event_id))?;
        sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
        tx.commit().await?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>> {
        let mut sql = QueryBuilder::<Postgres>::new(
            "SELECT e.id, e.source_name, e.type, e.subject, e.received_at, s.deliveries, s.succeeded, s.pending, s.dead
             FROM (SELECT e.id, e.source_name, e.type, e.subject, e.received_at FROM switchyard.events e WHERE true",
        );
        if let Some(source) = &query.source {
            sql.push(" AND e.source_name = ").push_bind(source);
        }
        if let Some(ty) = &query.ty {
            sql.push(" AND e.type = ").push_bind(ty);
        }
        if query.trigger.is_some() || query.status.is_some() {
            sql.push(" AND EXISTS (SELECT 1 FROM switchyard.deliveries x WHERE x.event_id = e.id");
            if let Some(trigger) = &query.trigger {
                sql.push(" AND x.trigger = ").push_bind(trigger);
            }
            if let Some(status) = query.status {
                sql.push(" AND x.status = ").push_bind(status.as_str());
            }
            sql.push(")");
        }
        if let Some(since) = query.since {
            sql.push(" AND e.received_at >= ").push_bind(since);
        }
        if let Some(after) = query.after {
            sql.push(" AND e.id > ").push_bind(after);
        }
        let order = if query.after.is_some() {
            " ORDER BY e.id"
        } else {
            " ORDER BY e.id DESC"
        };
        sql.push(order);
        if let Some(limit) = rows::limit(query.limit) {
            sql.push(" LIMIT ").push_bind(limit);
        }
        sql.push(
            ") e CROSS JOIN LATERAL (
                SELECT count(*) AS deliveries,
                       count(*) FILTER (WHERE d.status = 'succeeded') AS succeeded,
                       count(*) FILTER (WHERE d.status IN ('pending', 'running')) AS pending,
                       count(*) FILTER (WHERE d.status = 'dead') AS dead
                FROM switchyard.deliveries d WHERE d.event_id = e.id) s",
        );
        sql.push(order);

        let found = sql.build().fetch_all(&self.pool).await?;
        found
            .iter()
            .map(|row| {
                Ok(EventSummary {
                    id: row.try_get("id")?,
                    source_name: row.try_get("source_name")?,
                    ty: row.try_get("type")?,
                    subject: row.try_get("subject")?,
                    received_at: row.try_get("received_at")?,
                    deliveries: rows::count(row.try_get("deliveries")?),
                    succeeded: rows::count(row.try_get("succeeded")?),
                    pending: rows::count(row.try_get("pending")?),
                    dead: rows::count(row.try_get("dead")?),
                })
            })
            .collect()
    }

    async fn get_event(&self, id: Uuid) -> Result<Option<EventDetail>> {
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM switchyard.events e WHERE e.id = $1"
        );
        let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let event = event_from_row(&row)?;
        let deliveries = format!(
            "SELECT {DELIVERY_COLUMNS} FROM switchyard.deliveries WHERE event_id = $1 ORDER BY id"
        );
        let mut deliveries = sqlx::query(&deliveries)
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        let attempts = sqlx::query(
            "SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.outcome, a.error
             FROM switchyard.attempts a JOIN switchyard.deliveries d ON d.id = a.delivery_id
             WHERE d.event_id = $1
             ORDER BY a.delivery_id, a.attempt",
        )
        .bind(id)
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
        sqlx::query(EVENTS_BETWEEN)
            .bind(since)
            .bind(until)
            .bind(source)
            .bind(rows::limit(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn list_dead(&self, query: &DeadQuery) -> Result<Vec<DeadLetter>> {
        sqlx::query(LIST_DEAD)
            .bind(query.trigger.as_deref())
            .bind(query.since)
            .bind(rows::limit(query.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(DeadLetter {
                    delivery_id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    trigger: row.try_get("trigger")?,
                    source_name: row.try_get("source_name")?,
                    ty: row.try_get("type")?,
                    attempts: rows::count(i64::from(row.try_get::<i32, _>("attempts")?)),
                    last_error: row.try_get("last_error")?,
                    died_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn get_delivery(&self, id: i64) -> Result<Option<DeliveryDetail>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM switchyard.deliveries WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut delivery = delivery_from_row(&row)?;
        delivery.attempt_log = sqlx::query(
            "SELECT delivery_id, attempt, started_at, duration_ms, outcome, error
             FROM switchyard.attempts WHERE delivery_id = $1 ORDER BY attempt",
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
        let mut tx = self.pool.begin().await?;
        let mut created: Vec<i64> = sqlx::query_scalar(REPLAY_DEAD)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
        if !created.is_empty() {
            sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        created.sort_unstable();
        Ok(created)
    }

    async fn purge_dead(&self, query: &DeadQuery) -> Result<u64> {
        let done = sqlx::query(PURGE_DEAD)
            .bind(query.trigger.as_deref())
            .bind(query.since)
            .bind(rows::limit(query.limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let per_trigger = |rows: Vec<PgRow>| -> Result<Vec<(String, u64)>> {
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
            "SELECT trigger, count(*) FROM switchyard.deliveries
             WHERE status IN ('pending', 'running') GROUP BY trigger ORDER BY trigger",
        )
        .fetch_all(&self.pool)
        .await?;
        let dead = sqlx::query("SELECT trigger, count(*) FROM switchyard.deliveries WHERE status = 'dead' GROUP BY trigger ORDER BY trigger")
            .fetch_all(&self.pool)
            .await?;
        let oldest_pending_secs: f64 = sqlx::query_scalar(
            "SELECT coalesce(extract(epoch FROM now() - min(run_at))::float8, 0)
             FROM switchyard.deliveries WHERE status = 'pending' AND run_at <= now()",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            depth: per_trigger(depth)?,
            oldest_pending_secs: oldest_pending_secs.max(0.0),
            dead: per_trigger(dead)?,
        })
    }
}

/// Creates the schema under a transaction-scoped advisory lock (so that concurrent
/// `CREATE SCHEMA IF NOT EXISTS` cannot race), then migrates inside it.
async fn migrate_on(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS switchyard")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::query("SET search_path TO switchyard")
        .execute(&mut *conn)
        .await?;
    migrations::run(migrations::POSTGRES, conn).await?;
    Ok(())
}

/// Turns a foreign-key violation on `deliveries.event_id` into a clear error.
fn missing_event(error: sqlx::Error, event_id: Uuid) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Invalid(format!("event {event_id} does not exist"))
        }
        _ => error.into(),
    }
}

fn lease_arrays(leases: &[Lease]) -> (Vec<i64>, Vec<Uuid>) {
    leases
        .iter()
        .map(|lease| (lease.delivery_id, lease.token))
        .unzip()
}

/// The `events` columns of a batch, one array per column, for `UNNEST`.
#[derive(Default)]
struct EventColumns<'a> {
    ids: Vec<Uuid>,
    source_names: Vec<&'a str>,
    sources: Vec<&'a str>,
    types: Vec<&'a str>,
    subjects: Vec<Option<&'a str>>,
    times: Vec<DateTime<Utc>>,
    datacontenttypes: Vec<Option<&'a str>>,
    data: Vec<Option<Json<&'a serde_json::Value>>>,
    data_base64: Vec<Option<&'a str>>,
    partitionkeys: Vec<Option<&'a str>>,
    traceparents: Vec<Option<&'a str>>,
    dedupe_keys: Vec<Option<&'a str>>,
    received_ats: Vec<DateTime<Utc>>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, event: &'a Event) {
        self.ids.push(event.id);
        self.source_names.push(&event.source_name);
        self.sources.push(&event.source);
        self.types.push(&event.ty);
        self.subjects.push(event.subject.as_deref());
        self.times.push(event.time);
        self.datacontenttypes.push(event.datacontenttype.as_deref());
        self.data.push(event.data.as_ref().map(Json));
        self.data_base64.push(event.data_base64.as_deref());
        self.partitionkeys.push(event.partitionkey.as_deref());
        self.traceparents.push(event.traceparent.as_deref());
        self.dedupe_keys.push(event.dedupe_key.as_deref());
        self.received_ats.push(event.received_at);
    }

    fn bind<'q, O>(
        self,
        query: sqlx::query::QueryScalar<'q, Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, Postgres, O, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.ids)
            .bind(self.source_names)
            .bind(self.sources)
            .bind(self.types)
            .bind(self.subjects)
            .bind(self.times)
            .bind(self.datacontenttypes)
            .bind(self.data)
            .bind(self.data_base64)
            .bind(self.partitionkeys)
            .bind(self.traceparents)
            .bind(self.dedupe_keys)
            .bind(self.received_ats)
    }
}

/// Reads the columns [`event_columns!`] selects.
fn event_from_row(row: &PgRow) -> Result<Event> {
    Ok(Event {
        specversion: "1.0".to_owned(),
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        ty: row.try_get("type")?,
        subject: row.try_get("subject")?,
        time: row.try_get("time")?,
        datacontenttype: row.try_get("datacontenttype")?,
        data: row.try_get("data")?,
        data_base64: row.try_get("data_base64")?,
        partitionkey: row.try_get("partitionkey")?,
        traceparent: row.try_get("traceparent")?,
        source_name: row.try_get("source_name")?,
        dedupe_key: row.try_get("dedupe_key")?,
        received_at: row.try_get("received_at")?,
    })
}

/// Reads [`DELIVERY_COLUMNS`], with an empty attempt log.
fn delivery_from_row(row: &PgRow) -> Result<DeliveryDetail> {
    Ok(DeliveryDetail {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        trigger: row.try_get("trigger")?,
        status: rows::status(row.try_get("status")?)?,
        attempts: rows::count(i64::from(row.try_get::<i32, _>("attempts")?)),
        run_at: row.try_get("run_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        ordering_key: row.try_get("ordering_key")?,
        replay_of: row.try_get("replay_of")?,
        last_error: row.try_get("last_error")?,
        attempt_log: Vec::new(),
    })
}

fn attempt_from_row(row: &PgRow) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        delivery_id: row.try_get("delivery_id")?,
        attempt: rows::count(i64::from(row.try_get::<i32, _>("attempt")?)),
        started_at: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        outcome: rows::outcome(row.try_get("outcome")?)?,
        error: row.try_get("error")?,
    })
}
