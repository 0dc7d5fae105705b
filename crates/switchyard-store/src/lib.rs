//! Switchyard's event log and delivery queue, on SQLite (the embedded default) and
//! Postgres (production).
//!
//! What belongs here: every SQL statement the engine runs, the embedded migrations,
//! and the row types they return. What does not: routing, retry decisions and handler
//! execution, which live in the `switchyard` crate and call the [`Store`] trait.
//!
//! Both backends keep the same tables (see `docs/event-log.md`):
//! - `events`: append-only log, unique on `(source_name, dedupe_key)`;
//! - `deliveries`: the queue, one row per (event, trigger) dispatch, with its status;
//! - `attempts`: append-only, one row per finished or abandoned attempt;
//! - `source_positions` and `rejected_inputs`: what sources keep between runs.
//!
//! - `usage`: attempts per day and trigger, rolled up by retention before it deletes them.
//!
//! A dead letter is a delivery whose status is `dead`.

mod migrations;
mod postgres;
mod queue;
mod read;
mod retention;
mod sqlite;
mod storable;
mod types;

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use switchyard_core::config::RetentionConfig;
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use retention::{RETENTION_BATCH, RetentionDeleted, RetentionDue, Usage, delete_expired};
pub use sqlite::SqliteStore;
pub use types::*;

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached, timed out, or failed for a reason that may
    /// pass (a full disk, a lock conflict). Ingress answers 503 for these; the
    /// dispatcher and the sources retry later.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused the values themselves: text it cannot hold, a value too
    /// large for an index, a broken constraint. The same values fail the same way
    /// every time, so callers must not retry them as they are: ingress answers 400,
    /// and a batch that holds them is split so that they fail alone.
    #[error("the store refused the data: {0}")]
    Rejected(#[source] sqlx::Error),
    /// The database could not be reached when the store was opened; the source is the
    /// cause a direct connection attempt met (connection refused, unknown host, a
    /// refused password), not the pool's timeout. `url` has its credentials redacted.
    #[error("cannot reach the store at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be created or upgraded.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store's schema is not the one this binary's migrations make: missing, older,
    /// newer, changed, or half-applied. The message says what to do.
    #[error("{0}")]
    Schema(String),
    /// A row that should exist does not, an argument is out of range, or a stored value
    /// does not decode.
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if refuses_data(&error) {
            Self::Rejected(error)
        } else {
            Self::Unavailable(error)
        }
    }
}

/// Whether `error` says the statement's values, not the database's state, are at
/// fault: retrying the same values cannot succeed.
///
/// Postgres reports this by SQLSTATE class: `22` (data exception, such as a NUL
/// character in text or JSON), `23` (integrity constraint violation) and `54` (program
/// limit exceeded, such as an index row that is too large). SQLite by primary result
/// code: `SQLITE_TOOBIG`, `SQLITE_CONSTRAINT` and `SQLITE_MISMATCH`. A value that sqlx
/// cannot encode counts too.
fn refuses_data(error: &sqlx::Error) -> bool {
    const SQLITE_TOOBIG: i32 = 18;
    const SQLITE_CONSTRAINT: i32 = 19;
    const SQLITE_MISMATCH: i32 = 20;
    match error {
        sqlx::Error::Encode(_) => true,
        sqlx::Error::Database(database) => {
            let Some(code) = database.code() else {
                return false;
            };
            if database
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                matches!(code.get(..2), Some("22" | "23" | "54"))
            } else {
                code.parse::<i32>().is_ok_and(|code| {
                    matches!(
                        code & 0xff,
                        SQLITE_TOOBIG | SQLITE_CONSTRAINT | SQLITE_MISMATCH
                    )
                })
            }
        }
        _ => false,
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The event log and queue. Implemented for SQLite and Postgres.
///
/// Every method is one transaction unless it says otherwise. Methods are cancellation
/// safe in the sense that dropping the future either commits nothing or everything.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the schema and returns the migrations it applied, in order
    /// (none when the schema was current). Safe to call from several processes at once:
    /// each migration is applied, and reported, by one of them.
    async fn migrate(&self) -> Result<Vec<AppliedMigration>>;

    /// Checks, without changing anything, that the schema is exactly the one
    /// [`migrate`](Store::migrate) makes. Fails with [`StoreError::Schema`] when it is
    /// missing, older or newer than this binary, was migrated by a build whose
    /// migrations differ, or holds a migration that failed part-way.
    async fn check_schema(&self) -> Result<()>;

    /// Commits a one-row write, for `/readyz`: succeeds only when the store can commit,
    /// which a read-only database, a full disk or a broken connection prevents. The
    /// caller bounds how long it waits.
    async fn probe_write(&self) -> Result<()>;

    /// Appends events with their deliveries, all in one transaction.
    ///
    /// An event whose `(source_name, dedupe_key)` already exists is not inserted and its
    /// deliveries are not created; its result is `Duplicate` with the original id. The
    /// results are in input order.
    async fn append(&self, batch: &[NewEvent]) -> Result<Vec<Appended>>;

    /// Appends like [`append`](Store::append), and creates the deliveries marked
    /// [`claim`](NewDelivery::claim) already claimed by the caller, as if
    /// [`claim`](Store::claim) had returned them in the same transaction: running,
    /// attempt 1, one fresh lease token, `lease_expires_at = now + lease`. Returns the
    /// results in input order and the claimed deliveries; a duplicate's deliveries are
    /// not created, so they are not among them. Signals other processes only for
    /// deliveries left pending.
    async fn append_claiming(
        &self,
        batch: &[NewEvent],
        lease: Duration,
    ) -> Result<(Vec<Appended>, Vec<Claimed>)>;

    /// Claims up to `limit` runnable deliveries of the given triggers: pending ones
    /// whose `run_at` has passed and, for ordered triggers, whose key has no earlier
    /// unfinished delivery. Each claimed delivery gets a fresh lease token and
    /// `lease_expires_at = now + lease`, which makes it running (its stored `status`
    /// stays `pending`); its attempt number is incremented. Never returns a delivery
    /// whose lease is live.
    async fn claim(&self, triggers: &[String], limit: u32, lease: Duration)
    -> Result<Vec<Claimed>>;

    /// Extends the leases of the given (delivery, token) pairs to `now + lease`.
    /// Returns, in input order, whether each was still held; a lost lease is not
    /// extended.
    async fn heartbeat(&self, leases: &[Lease], lease: Duration) -> Result<Vec<bool>>;

    /// Records finished attempts and moves their deliveries on, fenced by the lease
    /// token: a result whose token no longer matches a running delivery is refused
    /// (its attempt is not recorded) and reported as `false` in the output, in input
    /// order. All in one transaction.
    async fn finish(&self, results: &[Finished]) -> Result<Vec<bool>>;

    /// Gives claimed deliveries back without recording an attempt (shutdown before
    /// they started): lease cleared, so the delivery is `pending` again, and attempt
    /// number decremented. Fenced by token like `finish`.
    async fn release(&self, leases: &[Lease]) -> Result<u64>;

    /// Finds running deliveries whose lease has expired, records an `abandoned`
    /// attempt for each (started at `claimed_at`, error "lease expired"), and makes
    /// them pending again, runnable now. Returns how many: 0 also when another
    /// process's reclaim is under way (Postgres), which covers every trigger.
    async fn reclaim_expired(&self) -> Result<u64>;

    /// When the earliest pending delivery of these triggers becomes runnable, if any.
    /// Deliveries held back by their ordering key do not count: they become runnable
    /// when the one ahead of them finishes, not at a time.
    async fn next_run_at(&self, triggers: &[String]) -> Result<Option<DateTime<Utc>>>;

    /// Waits until another process may have added runnable work (Postgres LISTEN), or
    /// forever if the backend has no such signal. Cancellation safe.
    async fn wait_for_work(&self) -> Result<()>;

    /// Adds deliveries for an existing event (replay). Returns the new delivery ids.
    async fn add_deliveries(
        &self,
        event_id: Uuid,
        deliveries: &[NewDelivery],
        replay_of: Option<i64>,
    ) -> Result<Vec<i64>>;

    /// Lists events, newest first (oldest first when `query.after` is set), with a
    /// summary of their deliveries.
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>>;

    /// One event with every delivery and every attempt.
    async fn get_event(&self, id: Uuid) -> Result<Option<EventDetail>>;

    /// Events received in `[since, until)`, in id order (which is arrival order), for
    /// replay: a page of at most `limit` (0: no limit) after the event `after`.
    async fn events_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        source: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<switchyard_core::Event>>;

    /// The position of a cron source: the latest scheduled time it fired or skipped.
    /// `None` for a schedule never seen before.
    async fn schedule_position(&self, source: &str) -> Result<Option<DateTime<Utc>>>;

    /// Commits a cron fire, in one transaction: the tick event (deduplicated like
    /// [`append`](Store::append), so only one process's fire of a scheduled time is
    /// kept), the fires `skipped` before it, and the schedule's position, which only
    /// ever moves forward. With `fire: None` it records skips alone and returns `None`.
    async fn record_fire(
        &self,
        source: &str,
        fire: Option<&NewEvent>,
        skipped: &[DateTime<Utc>],
        position: DateTime<Utc>,
    ) -> Result<Option<Appended>>;

    /// The most recent skipped fires of a cron source, newest first.
    async fn list_skipped(&self, source: &str, limit: u32) -> Result<Vec<DateTime<Utc>>>;

    /// The position (checkpoint) a source last saved with
    /// [`append_with_position`](Store::append_with_position); `None` if it never did.
    async fn source_position(&self, source: &str) -> Result<Option<serde_json::Value>>;

    /// Appends events like [`append`](Store::append) and replaces the source's
    /// position, in one transaction: after a crash, the position never claims events
    /// that were not committed, nor misses ones that were.
    async fn append_with_position(
        &self,
        source: &str,
        batch: &[NewEvent],
        position: &serde_json::Value,
    ) -> Result<Vec<Appended>>;

    /// Records an input `source` could not turn into events, such as an SQS message
    /// that is not an S3 notification. An input already recorded under the same
    /// `input_id` is not recorded again; returns whether this one was.
    async fn reject_input(
        &self,
        source: &str,
        input_id: &str,
        reason: &str,
        body: &str,
    ) -> Result<bool>;

    /// Rejected inputs, newest first: of one source, or of all.
    async fn list_rejected(&self, source: Option<&str>, limit: u32) -> Result<Vec<RejectedInput>>;

    /// Dead letters (deliveries with status `dead`), newest first.
    async fn list_dead(&self, query: &DeadQuery) -> Result<Vec<DeadLetter>>;

    /// One delivery with its attempts.
    async fn get_delivery(&self, id: i64) -> Result<Option<DeliveryDetail>>;

    /// Replays dead deliveries: each gets a new pending delivery (same event and
    /// trigger, `replay_of` set) and its own status becomes `replayed`. Ids that are
    /// not dead letters are skipped. Returns the new delivery ids.
    async fn replay_dead(&self, ids: &[i64]) -> Result<Vec<i64>>;

    /// Deletes the dead letters `list_dead` would list for the query, with their
    /// attempts. Returns how many.
    async fn purge_dead(&self, query: &DeadQuery) -> Result<u64>;

    /// Queue figures for `/metrics`.
    async fn stats(&self) -> Result<QueueStats>;

    /// What retention under `policy` would delete at `now`, per table (`events`,
    /// `dead_letters`, `rejected_inputs`), with each table's oldest row. Reads only.
    async fn retention_due(
        &self,
        policy: &RetentionConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<RetentionDue>>;

    /// Deletes one batch of what has expired at `now` under `policy` (the rules are in
    /// `docs/event-log.md`): at most `limit` rows of each table, oldest first, each
    /// table's batch in a transaction of its own that first rolls the attempts it
    /// deletes up into `usage`. Rows another transaction holds are left for a later
    /// batch (Postgres). [`delete_expired`] repeats it until nothing is left.
    async fn delete_expired(
        &self,
        policy: &RetentionConfig,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RetentionDeleted>;

    /// The `usage` table: attempts that retention deleted, per UTC day and trigger,
    /// oldest day first.
    async fn usage(&self) -> Result<Vec<Usage>>;
}

/// Applies `op` again to parts of a batch of `len` items after the store refused the
/// batch as a whole ([`StoreError::Rejected`]): to each half, then to each half of a
/// half it refuses again, and so on, so that the items it refuses end up alone and
/// only they fail. `op` gets the range of items to apply to. Returns each final part
/// with what `op` returned for it, in item order. Only a refusal splits a part; any
/// other error is that part's result, so `op` retries what it wants retried. A batch
/// of one item is tried once more.
///
/// Ingress, sources and the completer commit in batches; this is how one poison value
/// is kept from failing the others beside it. A batch with one refused item costs
/// about two statements per halving, `2 × log2(len)` in all.
pub async fn split_refused<R, F, Fut>(len: usize, mut op: F) -> Vec<(Range<usize>, Result<R>)>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    // The later half first, so that popping takes the parts in item order.
    let halves = |part: Range<usize>| {
        let middle = part.start + part.len() / 2;
        [middle..part.end, part.start..middle]
    };
    let mut parts = Vec::new();
    if len > 1 {
        parts.extend(halves(0..len));
    } else {
        parts.push(0..len);
    }
    let mut done = Vec::new();
    while let Some(part) = parts.pop() {
        match op(part.clone()).await {
            Err(StoreError::Rejected(_)) if part.len() > 1 => parts.extend(halves(part)),
            result => done.push((part, result)),
        }
    }
    done
}

/// A migration [`Store::migrate`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
}

/// Opens an existing store for reading, as the inspection commands do: never creates
/// a SQLite file (a missing one is [`StoreError::Invalid`] naming it), and checks the
/// schema with [`Store::check_schema`] instead of migrating.
pub async fn open_existing(url: &str) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::open_existing(url).await?)
    } else {
        open(url).await?
    };
    store.check_schema().await?;
    Ok(store)
}

/// Opens the store a URL names: `sqlite://PATH`, `sqlite::memory:` or
/// `postgres://...`, creating a missing SQLite file. Does not migrate.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Invalid(format!(
            "unsupported store URL scheme in {:?} (use sqlite://PATH or postgres://...)",
            switchyard_core::config::redact_url(url)
        )))
    }
}
