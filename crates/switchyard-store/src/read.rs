//! The inspection side of the store, shared by both backends: listing and showing
//! events, deliveries, dead letters and rejected inputs, purging dead letters, reading
//! the positions sources saved, and decoding the rows those reads and the claims
//! return.
//!
//! The statements are written once, with `switchyard.`-qualified table names, and
//! built through a [`Statement`] whose parameters are [`Param`]s. A [`Backend`] says
//! what differs: how it names tables, how it writes a placeholder, and how a time, a
//! UUID and a JSON value bind and decode. The hot path (append, claim, finish,
//! reclaim) keeps its own SQL per backend, tuned to each.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use sqlx::{Database, Pool};
use switchyard_core::{Event, cloudevents};
use uuid::Uuid;

use crate::queue;
use crate::{
    AttemptRecord, DeadLetter, DeadQuery, DeliveryDetail, EventDetail, EventQuery, EventSummary,
    RejectedInput, Result, StoreError,
};

/// The columns of `events` aliased `e`, as [`event`] reads them.
macro_rules! event_columns {
    () => {
        "e.id, e.source_name, e.source, e.type, e.subject, e.time, e.datacontenttype, e.data, \
         e.data_base64, e.partitionkey, e.traceparent, e.dedupe_key, e.received_at, e.ce_id, \
         e.dataschema, e.extensions"
    };
}
pub(crate) use event_columns;

/// The status the store reports for the delivery aliased `$d`. A claim leaves a
/// delivery `pending` (on Postgres, so that it is a HOT update; see migrations 0006
/// and 0007) and gives it a lease: a `pending` delivery holding a lease is `running`.
macro_rules! status_of {
    ($d:literal) => {
        concat!(
            "CASE WHEN ",
            $d,
            ".status = 'pending' AND ",
            $d,
            ".lease_token IS NOT NULL THEN 'running' ELSE ",
            $d,
            ".status END"
        )
    };
}

/// The columns of `deliveries` aliased `d`, as [`delivery`] reads them.
macro_rules! delivery_columns {
    () => {
        concat!(
            "d.id, d.event_id, d.trigger, ",
            status_of!("d"),
            " AS status, d.attempts, d.run_at, d.created_at, d.updated_at, d.ordering_key, \
             d.replay_of, d.last_error"
        )
    };
}

/// The columns of `attempts` aliased `a`, as [`attempt`] reads them.
macro_rules! attempt_columns {
    () => {
        "a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.outcome, a.error, a.output"
    };
}

/// What a read binds: text, an integer, a time or a UUID.
pub(crate) enum Param {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
    Uuid(Uuid),
}

impl From<&str> for Param {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<i64> for Param {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<DateTime<Utc>> for Param {
    fn from(time: DateTime<Utc>) -> Self {
        Self::Time(time)
    }
}

impl From<Uuid> for Param {
    fn from(id: Uuid) -> Self {
        Self::Uuid(id)
    }
}

/// A statement for backend `B` and its parameters, built a piece at a time.
pub(crate) struct Statement<B> {
    sql: String,
    params: Vec<Param>,
    backend: PhantomData<B>,
}

impl<B: Backend> Statement<B> {
    /// Starts with `sql`, whose table names are `switchyard.`-qualified.
    fn new(sql: &str) -> Self {
        Self {
            sql: B::table_names(sql).into_owned(),
            params: Vec::new(),
            backend: PhantomData,
        }
    }

    /// Appends `sql`, whose table names are `switchyard.`-qualified.
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(&B::table_names(sql));
        self
    }

    /// Appends a placeholder for `param`.
    fn bind(&mut self, param: impl Into<Param>) -> &mut Self {
        self.params.push(param.into());
        self.sql.push_str(&B::placeholder(self.params.len()));
        self
    }

    /// Appends ` LIMIT` and the limit, unless `limit` is 0 (no limit).
    fn limit(&mut self, limit: u32) -> &mut Self {
        if let Some(limit) = queue::limit(limit) {
            self.push(" LIMIT ").bind(limit);
        }
        self
    }

    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// The parameters, in placeholder order.
    pub(crate) fn params(&self) -> &[Param] {
        &self.params
    }
}

/// What the shared reads need to know about a database.
pub(crate) trait Backend: Database + Sized {
    /// `sql` with its `switchyard.`-qualified table names as this backend names them.
    fn table_names(sql: &str) -> Cow<'_, str>;

    /// The placeholder of the `n`th parameter, from 1.
    fn placeholder(n: usize) -> String;

    /// Runs `statement` on `pool` and returns every row.
    async fn fetch(pool: &Pool<Self>, statement: Statement<Self>) -> Result<Vec<Self::Row>>;

    /// Runs `statement` on `pool` and returns how many rows it changed.
    async fn execute(pool: &Pool<Self>, statement: Statement<Self>) -> Result<u64>;

    fn text(row: &Self::Row, column: &str) -> Result<String>;
    fn optional_text(row: &Self::Row, column: &str) -> Result<Option<String>>;
    /// A `bigint` column.
    fn int(row: &Self::Row, column: &str) -> Result<i64>;
    fn optional_int(row: &Self::Row, column: &str) -> Result<Option<i64>>;
    /// An `integer` column holding a counter.
    fn count(row: &Self::Row, column: &str) -> Result<u32>;
    fn time(row: &Self::Row, column: &str) -> Result<DateTime<Utc>>;
    fn uuid(row: &Self::Row, column: &str) -> Result<Uuid>;
    fn json(row: &Self::Row, column: &str) -> Result<Option<serde_json::Value>>;
}

/// Reads the columns [`event_columns!`] names.
pub(crate) fn event<B: Backend>(row: &B::Row) -> Result<Event> {
    let switchyard_id = B::uuid(row, "id")?;
    let extensions = match B::json(row, "extensions")? {
        None => BTreeMap::new(),
        Some(serde_json::Value::Object(map)) => map.into_iter().collect(),
        Some(other) => {
            return Err(StoreError::Invalid(format!(
                "event {switchyard_id} extensions are not a JSON object: {other}"
            )));
        }
    };
    Ok(Event {
        specversion: cloudevents::SPECVERSION.to_owned(),
        id: queue::event_id(B::optional_text(row, "ce_id")?, switchyard_id),
        switchyard_id,
        source: B::text(row, "source")?,
        ty: B::text(row, "type")?,
        subject: B::optional_text(row, "subject")?,
        time: B::time(row, "time")?,
        datacontenttype: B::optional_text(row, "datacontenttype")?,
        dataschema: B::optional_text(row, "dataschema")?,
        data: B::json(row, "data")?,
        data_base64: B::optional_text(row, "data_base64")?,
        partitionkey: B::optional_text(row, "partitionkey")?,
        traceparent: B::optional_text(row, "traceparent")?,
        extensions,
        source_name: B::text(row, "source_name")?,
        dedupe_key: B::optional_text(row, "dedupe_key")?,
        received_at: B::time(row, "received_at")?,
    })
}

/// Reads the columns [`delivery_columns!`] names, with an empty attempt log.
pub(crate) fn delivery<B: Backend>(row: &B::Row) -> Result<DeliveryDetail> {
    Ok(DeliveryDetail {
        id: B::int(row, "id")?,
        event_id: B::uuid(row, "event_id")?,
        trigger: B::text(row, "trigger")?,
        status: queue::status(&B::text(row, "status")?)?,
        attempts: B::count(row, "attempts")?,
        run_at: B::time(row, "run_at")?,
        created_at: B::time(row, "created_at")?,
        updated_at: B::time(row, "updated_at")?,
        ordering_key: B::optional_text(row, "ordering_key")?,
        replay_of: B::optional_int(row, "replay_of")?,
        last_error: B::optional_text(row, "last_error")?,
        attempt_log: Vec::new(),
    })
}

/// Reads the columns [`attempt_columns!`] names.
pub(crate) fn attempt<B: Backend>(row: &B::Row) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        delivery_id: B::int(row, "delivery_id")?,
        attempt: B::count(row, "attempt")?,
        started_at: B::time(row, "started_at")?,
        duration_ms: B::int(row, "duration_ms")?,
        outcome: queue::outcome(&B::text(row, "outcome")?)?,
        error: B::optional_text(row, "error")?,
        output: B::optional_text(row, "output")?,
    })
}

fn summary<B: Backend>(row: &B::Row) -> Result<EventSummary> {
    Ok(EventSummary {
        id: B::uuid(row, "id")?,
        source_name: B::text(row, "source_name")?,
        ty: B::text(row, "type")?,
        subject: B::optional_text(row, "subject")?,
        received_at: B::time(row, "received_at")?,
        deliveries: queue::count(B::int(row, "deliveries")?),
        succeeded: queue::count(B::int(row, "succeeded")?),
        pending: queue::count(B::int(row, "pending")?),
        dead: queue::count(B::int(row, "dead")?),
    })
}

fn dead_letter<B: Backend>(row: &B::Row) -> Result<DeadLetter> {
    Ok(DeadLetter {
        delivery_id: B::int(row, "id")?,
        event_id: B::uuid(row, "event_id")?,
        trigger: B::text(row, "trigger")?,
        source_name: B::text(row, "source_name")?,
        ty: B::text(row, "type")?,
        attempts: B::count(row, "attempts")?,
        last_error: B::optional_text(row, "last_error")?,
        died_at: B::time(row, "updated_at")?,
    })
}

fn rejected_input<B: Backend>(row: &B::Row) -> Result<RejectedInput> {
    Ok(RejectedInput {
        id: B::int(row, "id")?,
        source_name: B::text(row, "source_name")?,
        input_id: B::text(row, "input_id")?,
        reason: B::text(row, "reason")?,
        body: B::text(row, "body")?,
        received_at: B::time(row, "received_at")?,
    })
}

async fn fetch_with<B: Backend, T>(
    pool: &Pool<B>,
    statement: Statement<B>,
    decode: fn(&B::Row) -> Result<T>,
) -> Result<Vec<T>> {
    B::fetch(pool, statement)
        .await?
        .iter()
        .map(decode)
        .collect()
}

/// The events `query` matches, each with the counts of its deliveries by status.
///
/// The filters, order and limit apply to the events alone, in a subquery; only the
/// events it keeps are joined with their deliveries.
pub(crate) async fn list_events<B: Backend>(
    pool: &Pool<B>,
    query: &EventQuery,
) -> Result<Vec<EventSummary>> {
    let mut sql = Statement::<B>::new(
        "SELECT e.id, e.source_name, e.type, e.subject, e.received_at,
                count(d.id) AS deliveries,
                count(*) FILTER (WHERE d.status = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE d.status = 'pending') AS pending,
                count(*) FILTER (WHERE d.status = 'dead') AS dead
         FROM (SELECT e.id, e.source_name, e.type, e.subject, e.received_at
               FROM switchyard.events e WHERE true",
    );
    if let Some(source) = &query.source {
        sql.push(" AND e.source_name = ").bind(source.as_str());
    }
    if let Some(ty) = &query.ty {
        sql.push(" AND e.type = ").bind(ty.as_str());
    }
    if query.trigger.is_some() || query.status.is_some() {
        sql.push(" AND EXISTS (SELECT 1 FROM switchyard.deliveries x WHERE x.event_id = e.id");
        if let Some(trigger) = &query.trigger {
            sql.push(" AND x.trigger = ").bind(trigger.as_str());
        }
        if let Some(status) = query.status {
            sql.push(concat!(" AND ", status_of!("x"), " = "))
                .bind(status.as_str());
        }
        sql.push(")");
    }
    if let Some(since) = query.since {
        sql.push(" AND e.received_at >= ").bind(since);
    }
    if let Some(after) = query.after {
        sql.push(" AND e.id > ").bind(after);
    }
    let order = if query.after.is_some() {
        " ORDER BY e.id"
    } else {
        " ORDER BY e.id DESC"
    };
    sql.push(order).limit(query.limit);
    sql.push(
        ") e LEFT JOIN switchyard.deliveries d ON d.event_id = e.id
         GROUP BY e.id, e.source_name, e.type, e.subject, e.received_at",
    )
    .push(order);
    fetch_with(pool, sql, summary::<B>).await
}

/// One event with its deliveries and their attempts.
pub(crate) async fn get_event<B: Backend>(pool: &Pool<B>, id: Uuid) -> Result<Option<EventDetail>> {
    let mut sql = Statement::<B>::new(concat!(
        "SELECT ",
        event_columns!(),
        " FROM switchyard.events e WHERE e.id = "
    ));
    sql.bind(id);
    let Some(event) = fetch_with(pool, sql, event::<B>).await?.pop() else {
        return Ok(None);
    };
    let mut sql = Statement::<B>::new(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM switchyard.deliveries d WHERE d.event_id = "
    ));
    sql.bind(id).push(" ORDER BY d.id");
    let mut deliveries = fetch_with(pool, sql, delivery::<B>).await?;
    let mut sql = Statement::<B>::new(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM switchyard.attempts a JOIN switchyard.deliveries d ON d.id = a.delivery_id
          WHERE d.event_id = "
    ));
    sql.bind(id).push(" ORDER BY a.delivery_id, a.attempt");
    let attempts = fetch_with(pool, sql, attempt::<B>).await?;
    queue::attach_attempts(&mut deliveries, attempts);
    Ok(Some(EventDetail {
        source_name: event.source_name.clone(),
        received_at: event.received_at,
        dedupe_key: event.dedupe_key.clone(),
        event,
        deliveries,
    }))
}

/// The events received in `[since, until)`, of `source` if given, after event `after`
/// if given, in id order.
pub(crate) async fn events_between<B: Backend>(
    pool: &Pool<B>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    source: Option<&str>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Event>> {
    let mut sql = Statement::<B>::new(concat!(
        "SELECT ",
        event_columns!(),
        " FROM switchyard.events e WHERE e.received_at >= "
    ));
    sql.bind(since).push(" AND e.received_at < ").bind(until);
    if let Some(source) = source {
        sql.push(" AND e.source_name = ").bind(source);
    }
    if let Some(after) = after {
        sql.push(" AND e.id > ").bind(after);
    }
    sql.push(" ORDER BY e.id").limit(limit);
    fetch_with(pool, sql, event::<B>).await
}

/// Appends the conditions of `query` on dead letter `d`, its order and its limit.
fn dead_letters<B: Backend>(sql: &mut Statement<B>, query: &DeadQuery) {
    sql.push(" WHERE d.status = 'dead'");
    if let Some(trigger) = &query.trigger {
        sql.push(" AND d.trigger = ").bind(trigger.as_str());
    }
    if let Some(since) = query.since {
        sql.push(" AND d.updated_at >= ").bind(since);
    }
    if let Some(before) = query.before {
        sql.push(" AND d.updated_at < ").bind(before);
    }
    sql.push(" ORDER BY d.updated_at DESC, d.id DESC")
        .limit(query.limit);
}

/// The dead letters `query` matches, most recent first.
pub(crate) async fn list_dead<B: Backend>(
    pool: &Pool<B>,
    query: &DeadQuery,
) -> Result<Vec<DeadLetter>> {
    let mut sql = Statement::<B>::new(
        "SELECT d.id, d.event_id, d.trigger, e.source_name, e.type, d.attempts, d.last_error,
                d.updated_at
         FROM switchyard.deliveries d JOIN switchyard.events e ON e.id = d.event_id",
    );
    dead_letters(&mut sql, query);
    fetch_with(pool, sql, dead_letter::<B>).await
}

/// Deletes the dead letters [`list_dead`] would list, with their attempts. Returns
/// how many.
pub(crate) async fn purge_dead<B: Backend>(pool: &Pool<B>, query: &DeadQuery) -> Result<u64> {
    let mut sql = Statement::<B>::new(
        "DELETE FROM switchyard.deliveries WHERE status = 'dead' AND id IN (
             SELECT d.id FROM switchyard.deliveries d",
    );
    dead_letters(&mut sql, query);
    sql.push(")");
    B::execute(pool, sql).await
}

/// One delivery with its attempts.
pub(crate) async fn get_delivery<B: Backend>(
    pool: &Pool<B>,
    id: i64,
) -> Result<Option<DeliveryDetail>> {
    let mut sql = Statement::<B>::new(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM switchyard.deliveries d WHERE d.id = "
    ));
    sql.bind(id);
    let Some(mut delivery) = fetch_with(pool, sql, delivery::<B>).await?.pop() else {
        return Ok(None);
    };
    let mut sql = Statement::<B>::new(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM switchyard.attempts a WHERE a.delivery_id = "
    ));
    sql.bind(id).push(" ORDER BY a.attempt");
    delivery.attempt_log = fetch_with(pool, sql, attempt::<B>).await?;
    Ok(Some(delivery))
}

/// The inputs recorded as rejected, of `source` if given, most recent first.
pub(crate) async fn list_rejected<B: Backend>(
    pool: &Pool<B>,
    source: Option<&str>,
    limit: u32,
) -> Result<Vec<RejectedInput>> {
    let mut sql = Statement::<B>::new(
        "SELECT id, source_name, input_id, reason, body, received_at
         FROM switchyard.rejected_inputs WHERE true",
    );
    if let Some(source) = source {
        sql.push(" AND source_name = ").bind(source);
    }
    sql.push(" ORDER BY id DESC").limit(limit);
    fetch_with(pool, sql, rejected_input::<B>).await
}

/// Where schedule `source` has fired up to, if it has fired.
pub(crate) async fn schedule_position<B: Backend>(
    pool: &Pool<B>,
    source: &str,
) -> Result<Option<DateTime<Utc>>> {
    let mut sql =
        Statement::<B>::new("SELECT position FROM switchyard.schedules WHERE source_name = ");
    sql.bind(source);
    let rows = B::fetch(pool, sql).await?;
    rows.first().map(|row| B::time(row, "position")).transpose()
}

/// The fire times schedule `source` skipped, most recent first.
pub(crate) async fn list_skipped<B: Backend>(
    pool: &Pool<B>,
    source: &str,
    limit: u32,
) -> Result<Vec<DateTime<Utc>>> {
    let mut sql = Statement::<B>::new(
        "SELECT scheduled_time FROM switchyard.skipped_fires WHERE source_name = ",
    );
    sql.bind(source)
        .push(" ORDER BY scheduled_time DESC")
        .limit(limit);
    fetch_with(pool, sql, |row| B::time(row, "scheduled_time")).await
}

/// The position source `source` saved, if any.
pub(crate) async fn source_position<B: Backend>(
    pool: &Pool<B>,
    source: &str,
) -> Result<Option<serde_json::Value>> {
    let mut sql = Statement::<B>::new(
        "SELECT position FROM switchyard.source_positions WHERE source_name = ",
    );
    sql.bind(source);
    let rows = B::fetch(pool, sql).await?;
    Ok(rows
        .first()
        .map(|row| B::json(row, "position"))
        .transpose()?
        .flatten())
}

/// How many deliveries each trigger has with the stored status `status`.
pub(crate) async fn per_trigger<B: Backend>(
    pool: &Pool<B>,
    status: &str,
) -> Result<Vec<(String, u64)>> {
    let mut sql = Statement::<B>::new(
        "SELECT trigger, count(*) AS deliveries FROM switchyard.deliveries WHERE status = ",
    );
    sql.bind(status).push(" GROUP BY trigger ORDER BY trigger");
    fetch_with(pool, sql, |row| {
        Ok((
            B::text(row, "trigger")?,
            u64::try_from(B::int(row, "deliveries")?).unwrap_or(0),
        ))
    })
    .await
}
