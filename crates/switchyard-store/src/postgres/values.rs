//! Postgres rows to and from the crate's types: a batch of events as one array per
//! column for `UNNEST`, and the readers for the column lists in `sql`.

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use switchyard_core::Event;
use uuid::Uuid;

use crate::queue;
use crate::{AttemptRecord, DeliveryDetail, Result};

/// The `events` columns of a batch, one array per column, for `UNNEST`.
#[derive(Default)]
pub(super) struct EventColumns<'a> {
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
    pub(super) fn push(&mut self, event: &'a Event) {
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

    /// Binds the arrays as `$1` to `$13`, in the column order of `sql::APPEND`.
    pub(super) fn bind<'q>(
        self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments>
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

/// Reads the event columns `sql` selects (its `event_columns!`).
pub(super) fn event(row: &PgRow) -> Result<Event> {
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

/// Reads the delivery columns `sql` selects (its `delivery_columns!`), with an empty
/// attempt log.
pub(super) fn delivery(row: &PgRow) -> Result<DeliveryDetail> {
    Ok(DeliveryDetail {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        trigger: row.try_get("trigger")?,
        status: queue::status(row.try_get("status")?)?,
        attempts: queue::count(i64::from(row.try_get::<i32, _>("attempts")?)),
        run_at: row.try_get("run_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        ordering_key: row.try_get("ordering_key")?,
        replay_of: row.try_get("replay_of")?,
        last_error: row.try_get("last_error")?,
        attempt_log: Vec::new(),
    })
}

/// Reads a row of `attempts`.
pub(super) fn attempt(row: &PgRow) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        delivery_id: row.try_get("delivery_id")?,
        attempt: queue::count(i64::from(row.try_get::<i32, _>("attempt")?)),
        started_at: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        outcome: queue::outcome(row.try_get("outcome")?)?,
        error: row.try_get("error")?,
    })
}

/// Reads `(trigger, count)` rows.
pub(super) fn per_trigger(rows: &[PgRow]) -> Result<Vec<(String, u64)>> {
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
            ))
        })
        .collect()
}
