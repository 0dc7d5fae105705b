//! The Postgres backend, for production and for several Switchyard processes sharing
//! one queue.
//!
//! Every object lives in the `switchyard` schema and every statement names it, so the
//! connections' `search_path` does not matter. Batches travel as arrays that the server
//! unnests, so a batch costs a constant number of round trips however large it is.
//! Claims use `FOR UPDATE SKIP LOCKED`, and `NOTIFY switchyard_work` wakes idle
//! dispatchers in other processes when runnable work appears.

mod append;
mod retention;
mod sql;
mod values;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Row};
use switchyard_core::Event;
use switchyard_core::config::{RetentionConfig, redact_url};
use tokio::sync::Mutex;
use uuid::Uuid;

use self::append::append_in;
use crate::migrations;
use crate::queue::{self, LEASE_EXPIRED};
use crate::read;
use crate::storable;
use crate::{
    Appended, AppliedMigration, Claimed, DeadLetter, DeadQuery, DeliveryDetail, EventDetail,
    EventQuery, EventSummary, Finished, Lease, NewDelivery, NewEvent, QueueStats, RejectedInput,
    Result, RetentionDeleted, RetentionDue, Store, StoreError, Usage,
};

/// The store on a Postgres database, in its `switchyard` schema.
///
/// Holds a pool of up to 20 connections; once [`Store::wait_for_work`] has been
/// called, one of them stays with the `LISTEN` for the life of the store. Claims,
/// heartbeats and reclaims of expired leases use a second pool of up to 4 connections
/// that commit asynchronously (`synchronous_commit = off`): they do not wait for the
/// WAL flush. That is safe because nothing is acknowledged on the strength of a lease
/// alone. If the server crashes before a claim reaches the disk, the delivery is
/// pending again after recovery and runs again (its result, if any, is refused: the
/// lease no longer exists); any later synchronous commit, such as the `finish` that
/// records the attempt, flushes the WAL up to and including the claim first. A lost
/// reclaim leaves the lease expired, to be reclaimed again.
///
/// Finishes use a third pool of up to 2 connections that commits synchronously. The
/// lease and finish connections plan with [`INDEX_PLANS`].
pub struct PostgresStore {
    pool: PgPool,
    leases: PgPool,
    results: PgPool,
    listener: Mutex<Option<PgListener>>,
}

/// Planner settings of the connections that claim, heartbeat, reclaim and finish. Each
/// of those statements has one right plan at any table size: a claim walks
/// `deliveries_runnable` in `(run_at, id)` order and stops after its limit, a reclaim
/// walks its due part, and a heartbeat or finish looks each delivery up by primary
/// key. The planner prices them from statistics that a queue outruns (it fills from
/// empty in seconds, and the first `ANALYZE` saw it empty), and with every page in
/// shared buffers it overprices index lookups as random reads.
/// Left to itself, on a table of 20,000 rows it reads every pending row and sorts them
/// for a claim of 256 (14 ms against 6 ms), and reads and hashes the whole table for a
/// finish of 256 (11–20 ms against 3 ms). Turning off the two whole-table strategies
/// leaves it the index plans; a statement that has no index path still runs.
const INDEX_PLANS: [(&str, &str); 2] = [("enable_seqscan", "off"), ("enable_bitmapscan", "off")];

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:pass@host/db`).
    ///
    /// Fails with [`StoreError::Invalid`] if the URL does not parse, and with
    /// [`StoreError::Unreachable`] if no connection can be made within 5 seconds: its
    /// cause is what one more, direct attempt to connect met.
    /// Does not migrate.
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| {
                StoreError::Invalid(format!("bad Postgres URL {:?}: {error}", redact_url(url)))
            })?
            .application_name("switchyard");
        let pool = match PgPoolOptions::new()
            .max_connections(20)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(sqlx::Error::PoolTimedOut) => return Err(unreachable(url, &options).await),
            Err(error) => return Err(error.into()),
        };
        let leases = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(
                options
                    .clone()
                    .options(INDEX_PLANS)
                    .options([("synchronous_commit", "off")]),
            );
        let results = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.options(INDEX_PLANS));
        Ok(Self {
            pool,
            leases,
            results,
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
    async fn migrate(&self) -> Result<Vec<AppliedMigration>> {
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
        let migrated = migrate_on(&mut conn).await;
        let closed = conn.close().await;
        let applied = migrated?;
        closed?;
        Ok(applied)
    }

    /// Reads sqlx's bookkeeping table in the `switchyard` schema, if there is one.
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
        migrations::check(migrations::POSTGRES, recorded.as_deref())
    }

    /// One statement, committed on its own with the server's usual durability.
    async fn probe_write(&self) -> Result<()> {
        sqlx::query(sql::PROBE_WRITE).execute(&self.pool).await?;
        Ok(())
    }

    /// Three statements whatever the batch size: insert the events that are new, look
    /// up the originals of the duplicates, insert the new events' deliveries.
    async fn append(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        let batch = storable::events(batch);
        let batch = &*batch;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // One statement, so no transaction block: `fetch_all` returns only at
        // `ReadyForQuery`, which Postgres sends after the implicit commit, so no caller
        // hears of an event before it is durable.
        let mut conn = self.pool.acquire().await?;
        Ok(append_in(&mut conn, batch, None).await?.0)
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
        // One statement, committed before the reply, as in `append`.
        let mut conn = self.pool.acquire().await?;
        append_in(&mut conn, batch, Some(lease)).await
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
        let rows = sqlx::query(sql::CLAIM)
            .bind(triggers)
            .bind(i64::from(limit))
            .bind(token)
            .bind(queue::lease_millis(lease)?)
            .fetch_all(&self.leases)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    lease: Lease {
                        delivery_id: row.try_get("delivery_id")?,
                        token,
                    },
                    trigger: row.try_get("trigger")?,
                    attempt: queue::count(i64::from(row.try_get::<i32, _>("attempts")?)),
                    created_at: row.try_get("delivery_created_at")?,
                    claimed_at: row.try_get("claimed_at")?,
                    event: read::event::<Postgres>(row)?,
                })
            })
            .collect()
    }

    async fn heartbeat(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens) = lease_arrays(leases);
        let held: Vec<i64> = sqlx::query_scalar(sql::HEARTBEAT)
            .bind(ids)
            .bind(tokens)
            .bind(queue::lease_millis(lease)?)
            .fetch_all(&self.leases)
            .await?;
        Ok(queue::positions_accepted(leases.len(), held))
    }

    /// One statement updates every delivery whose lease is still held, records those
    /// attempts (a final one on the delivery's row, a retried one in a row of its own)
    /// and signals other processes when a delivery became pending again or finished
    /// one of an ordering key (which may unblock the key's next delivery).
    async fn finish(&self, results: &[Finished]) -> Result<Vec<bool>> {
        let results = storable::results(results);
        let results = &*results;
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
        let mut outputs = Vec::with_capacity(results.len());
        for result in results {
            ids.push(result.lease.delivery_id);
            tokens.push(result.lease.token);
            statuses.push(queue::status_after(result.outcome).as_str());
            run_ats.push(result.retry_at);
            errors.push(result.error.as_deref());
            started_ats.push(result.started_at);
            durations.push(result.duration_ms);
            outcomes.push(result.outcome.as_str());
            outputs.push(result.output.as_deref());
        }

        // One statement, so no transaction block: as with `append`, `fetch_all` returns
        // only after the implicit commit.
        let positions: Vec<Option<i64>> = sqlx::query_scalar(sql::FINISH)
            .bind(ids)
            .bind(tokens)
            .bind(statuses)
            .bind(run_ats)
            .bind(errors)
            .bind(started_ats)
            .bind(durations)
            .bind(outcomes)
            .bind(outputs)
            .fetch_all(&self.results)
            .await?;
        let accepted = queue::positions_accepted(results.len(), positions.into_iter().flatten());

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
        let (ids, tokens) = lease_arrays(leases);
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(sql::RELEASE)
            .bind(ids)
            .bind(tokens)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if released > 0 {
            sqlx::query(sql::NOTIFY_WORK).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    /// On a lease connection: it plans the walk along `deliveries_runnable` whatever
    /// the statistics say (the alternative is reading the whole table), and a
    /// reclaim lost in a crash is made again after recovery. The walk reads every due
    /// pending delivery (no index covers the lease), so it runs in one process at a
    /// time: the others skip their turn.
    async fn reclaim_expired(&self) -> Result<u64> {
        let mut tx = self.leases.begin().await?;
        let ours: bool = sqlx::query_scalar(sql::TRY_LOCK_RECLAIM)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(0);
        }
        let reclaimed: i64 = sqlx::query_scalar(sql::RECLAIM_EXPIRED)
            .bind(LEASE_EXPIRED)
            .fetch_one(&mut *tx)
            .await?;
        if reclaimed > 0 {
            sqlx::query(sql::NOTIFY_WORK).execute(&mut *tx).await?;
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
        Ok(sqlx::query_scalar(sql::NEXT_RUN_AT)
            .bind(triggers)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Waits for a `NOTIFY switchyard_work` on a connection that the first call takes
    /// from the pool and keeps. The first call returns as soon as it listens (work
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
        listener.listen(sql::WORK_CHANNEL).await?;
        *guard = Some(listener);
        Ok(())
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
        let triggers: Vec<&str> = deliveries.iter().map(|d| d.trigger.as_str()).collect();
        let ordering_keys: Vec<Option<&str>> = deliveries
            .iter()
            .map(|d| d.ordering_key.as_deref())
            .collect();
        let mut tx = self.pool.begin().await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(sql::ADD_DELIVERIES)
            .bind(event_id)
            .bind(triggers)
            .bind(ordering_keys)
            .bind(replay_of)
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            return Err(StoreError::Invalid(format!(
                "event {event_id} does not exist"
            )));
        }
        sqlx::query(sql::NOTIFY_WORK).execute(&mut *tx).await?;
        tx.commit().await?;
        ids.sort_unstable();
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
        let mut tx = self.pool.begin().await?;
        if !skipped.is_empty() {
            sqlx::query(sql::INSERT_SKIPPED)
                .bind(source)
                .bind(skipped)
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
            .bind(position)
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
        let mut tx = self.pool.begin().await?;
        let (results, _) = append_in(&mut tx, batch, None).await?;
        sqlx::query(sql::SAVE_POSITION)
            .bind(source)
            .bind(position)
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
        let done = sqlx::query(sql::REJECT_INPUT)
            .bind(source)
            .bind(&*input_id)
            .bind(&*reason)
            .bind(&*body)
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
        let mut tx = self.pool.begin().await?;
        let mut created: Vec<i64> = sqlx::query_scalar(sql::REPLAY_DEAD)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
        if !created.is_empty() {
            sqlx::query(sql::NOTIFY_WORK).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        created.sort_unstable();
        Ok(created)
    }

    async fn purge_dead(&self, query: &DeadQuery) -> Result<u64> {
        read::purge_dead(&self.pool, query).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        let depth = read::per_trigger(&self.pool, "pending").await?;
        let dead = read::per_trigger(&self.pool, "dead").await?;
        let oldest_pending_secs: f64 = sqlx::query_scalar(sql::OLDEST_PENDING_SECS)
            .fetch_one(&self.pool)
            .await?;
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

/// Why a pool found no connection in time: what one direct attempt to connect meets
/// (connection refused, unknown host, a refused password), as
/// [`StoreError::Unreachable`]. The pool itself only reports that it timed out.
async fn unreachable(url: &str, options: &PgConnectOptions) -> StoreError {
    let attempt = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(options));
    let source = match attempt.await {
        Ok(Ok(conn)) => {
            // It answers now: the timeout is all there is to report.
            if let Err(error) = conn.close().await {
                tracing::debug!(%error, "closing the probe connection failed");
            }
            sqlx::Error::PoolTimedOut
        }
        Ok(Err(error)) => error,
        Err(_) => sqlx::Error::PoolTimedOut,
    };
    StoreError::Unreachable {
        url: redact_url(url),
        source,
    }
}

/// Creates the schema under a transaction-scoped advisory lock (so that concurrent
/// `CREATE SCHEMA IF NOT EXISTS` cannot race), then migrates inside it. Notices are
/// off on this connection: the `IF NOT EXISTS` statements raise one at every start.
async fn migrate_on(conn: &mut PgConnection) -> Result<Vec<AppliedMigration>> {
    sqlx::query(sql::QUIET_NOTICES).execute(&mut *conn).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(sql::LOCK_SCHEMA).execute(&mut *tx).await?;
    sqlx::query(sql::CREATE_SCHEMA).execute(&mut *tx).await?;
    tx.commit().await?;
    sqlx::query(sql::USE_SCHEMA).execute(&mut *conn).await?;
    let applied = migrations::run(migrations::POSTGRES, &mut *conn).await?;
    // The claim's plan depends on the queue's statistics. A backlog that built up while
    // no engine ran (or a fresh table) may have none yet, and then every claim sorts
    // the whole backlog; refreshing them at start-up is cheap (a sample of rows).
    sqlx::query(sql::ANALYZE_QUEUE).execute(&mut *conn).await?;
    Ok(applied)
}

fn lease_arrays(leases: &[Lease]) -> (Vec<i64>, Vec<Uuid>) {
    leases
        .iter()
        .map(|lease| (lease.delivery_id, lease.token))
        .unzip()
}
