//! SQLite values to and from the crate's types: timestamps as fixed-width text, UUIDs
//! as hyphenated text, lists and JSON values as JSON text; and the [`Backend`] of the
//! shared reads, which binds and decodes them so.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use crate::queue;
use crate::read::{Backend, Param, Statement};
use crate::{Result, StoreError};

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

impl Backend for Sqlite {
    /// SQLite has no schemas: the tables are the database's own.
    fn table_names(sql: &str) -> Cow<'_, str> {
        Cow::Owned(sql.replace("switchyard.", ""))
    }

    fn placeholder(n: usize) -> String {
        format!("?{n}")
    }

    async fn fetch(pool: &SqlitePool, statement: Statement<Self>) -> Result<Vec<SqliteRow>> {
        Ok(bound(&statement).fetch_all(pool).await?)
    }

    async fn execute(pool: &SqlitePool, statement: Statement<Self>) -> Result<u64> {
        Ok(bound(&statement).execute(pool).await?.rows_affected())
    }

    fn text(row: &SqliteRow, column: &str) -> Result<String> {
        Ok(row.try_get(column)?)
    }

    fn optional_text(row: &SqliteRow, column: &str) -> Result<Option<String>> {
        Ok(row.try_get(column)?)
    }

    fn int(row: &SqliteRow, column: &str) -> Result<i64> {
        Ok(row.try_get(column)?)
    }

    fn optional_int(row: &SqliteRow, column: &str) -> Result<Option<i64>> {
        Ok(row.try_get(column)?)
    }

    fn count(row: &SqliteRow, column: &str) -> Result<u32> {
        Ok(queue::count(row.try_get(column)?))
    }

    fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
        timestamp_at(row, column)
    }

    fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid> {
        parse_uuid(&row.try_get::<String, _>(column)?)
    }

    /// JSON is stored as text.
    fn json(row: &SqliteRow, column: &str) -> Result<Option<serde_json::Value>> {
        row.try_get::<Option<String>, _>(column)?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|error| StoreError::Invalid(format!("stored {column} is not JSON: {error}")))
    }
}

/// `statement` with its parameters bound.
fn bound(statement: &Statement<Sqlite>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    let mut query = sqlx::query(statement.sql());
    for param in statement.params() {
        query = match param {
            Param::Text(text) => query.bind(text.clone()),
            Param::Int(value) => query.bind(*value),
            Param::Time(time) => query.bind(timestamp(*time)),
            Param::Uuid(id) => query.bind(uuid_text(*id)),
        };
    }
    query
}
