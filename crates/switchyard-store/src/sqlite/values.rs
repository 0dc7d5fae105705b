//! SQLite values to and from the crate's types: timestamps as fixed-width text, UUIDs
//! as hyphenated text, lists as JSON, and the readers for the column lists in `sql`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use switchyard_core::Event;
use uuid::Uuid;

use crate::queue;
use crate::{AttemptRecord, DeliveryDetail, Result, StoreError};

/// The stored form of a timestamp: UTC with microseconds, always the same width, so
/// that text order is time order.
pub(super) fn timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(super) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            StoreError::Invalid(format!(
                "stored timestamp {text:?} is not RFC 3339: {error}"
            ))
        })
}

pub(super) fn timestamp_at(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    parse_timestamp(&row.try_get::<String, _>(column)?)
}

/// The stored form of a UUID.
pub(super) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(super) fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text)
        .map_err(|error| StoreError::Invalid(format!("stored id {text:?} is not a UUID: {error}")))
}

/// When a lease taken at `now` for `lease` runs out.
pub(super) fn lease_end(now: DateTime<Utc>, lease: Duration) -> Result<DateTime<Utc>> {
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|length| now.checked_add_signed(length))
        .ok_or_else(|| StoreError::Invalid(format!("lease of {lease:?} is too long")))
}

/// A JSON array of strings, for `IN (SELECT value FROM json_each(?))`.
pub(super) fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items).to_string()
}

/// Reads the event columns `sql` selects (its `event_columns!`).
pub(super) fn event(row: &SqliteRow) -> Result<Event> {
    let id: String = row.try_get("id")?;
    let data = row
        .try_get::<Option<String>, _>("data")?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|error| StoreError::Invalid(format!("event {id} data is not JSON: {error}")))?;
    Ok(Event {
        specversion: "1.0".to_owned(),
        id: parse_uuid(&id)?,
        source: row.try_get("source")?,
        ty: row.try_get("type")?,
        subject: row.try_get("subject")?,
        time: timestamp_at(row, "time")?,
        datacontenttype: row.try_get("datacontenttype")?,
        data,
        data_base64: row.try_get("data_base64")?,
        partitionkey: row.try_get("partitionkey")?,
        traceparent: row.try_get("traceparent")?,
        source_name: row.try_get("source_name")?,
        dedupe_key: row.try_get("dedupe_key")?,
        received_at: timestamp_at(row, "received_at")?,
    })
}

/// Reads the delivery columns `sql` selects (its `delivery_columns!`), with an empty
/// attempt log.
pub(super) fn delivery(row: &SqliteRow) -> Result<DeliveryDetail> {
    Ok(DeliveryDetail {
        id: row.try_get("id")?,
        event_id: parse_uuid(row.try_get("event_id")?)?,
        trigger: row.try_get("trigger")?,
        status: queue::status(row.try_get("status")?)?,
        attempts: queue::count(row.try_get("attempts")?),
        run_at: timestamp_at(row, "run_at")?,
        created_at: timestamp_at(row, "created_at")?,
        updated_at: timestamp_at(row, "updated_at")?,
        ordering_key: row.try_get("ordering_key")?,
        replay_of: row.try_get("replay_of")?,
        last_error: row.try_get("last_error")?,
        attempt_log: Vec::new(),
    })
}

/// Reads a row of `attempts`.
pub(super) fn attempt(row: &SqliteRow) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        delivery_id: row.try_get("delivery_id")?,
        attempt: queue::count(row.try_get("attempt")?),
        started_at: timestamp_at(row, "started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        outcome: queue::outcome(row.try_get("outcome")?)?,
        error: row.try_get("error")?,
    })
}

/// Reads `(trigger, count)` rows.
pub(super) fn per_trigger(rows: &[SqliteRow]) -> Result<Vec<(String, u64)>> {
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
            ))
        })
        .collect()
}
