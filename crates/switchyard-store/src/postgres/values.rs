//! Postgres values to and from the crate's types: a batch of events as one array per
//! column for `UNNEST`, and the [`Backend`] of the shared reads (native `uuid`,
//! `timestamptz` and `jsonb`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use switchyard_core::Event;
use uuid::Uuid;

use crate::Result;
use crate::queue;
use crate::read::{Backend, Param, Statement};

/// The `events` columns of a batch, one array per column, for `UNNEST`.
#[derive(Default)]
pub(super) struct EventColumns<'a> {
    ids: Vec<Uuid>,
    ce_ids: Vec<Option<&'a str>>,
    source_names: Vec<&'a str>,
    sources: Vec<&'a str>,
    types: Vec<&'a str>,
    subjects: Vec<Option<&'a str>>,
    times: Vec<DateTime<Utc>>,
    datacontenttypes: Vec<Option<&'a str>>,
    dataschemas: Vec<Option<&'a str>>,
    data: Vec<Option<Json<&'a serde_json::Value>>>,
    data_base64: Vec<Option<&'a str>>,
    partitionkeys: Vec<Option<&'a str>>,
    traceparents: Vec<Option<&'a str>>,
    extensions: Vec<Option<Json<&'a BTreeMap<String, serde_json::Value>>>>,
    dedupe_keys: Vec<Option<&'a str>>,
    received_ats: Vec<DateTime<Utc>>,
}

impl<'a> EventColumns<'a> {
    pub(super) fn push(&mut self, event: &'a Event) {
        self.ids.push(event.switchyard_id);
        self.ce_ids.push(queue::ce_id(event));
        self.source_names.push(&event.source_name);
        self.sources.push(&event.source);
        self.types.push(&event.ty);
        self.subjects.push(event.subject.as_deref());
        self.times.push(event.time);
        self.datacontenttypes.push(event.datacontenttype.as_deref());
        self.dataschemas.push(event.dataschema.as_deref());
        self.data.push(event.data.as_ref().map(Json));
        self.data_base64.push(event.data_base64.as_deref());
        self.partitionkeys.push(event.partitionkey.as_deref());
        self.traceparents.push(event.traceparent.as_deref());
        self.extensions.push(queue::extensions(event).map(Json));
        self.dedupe_keys.push(event.dedupe_key.as_deref());
        self.received_ats.push(event.received_at);
    }

    /// Binds the arrays as `$1` to `$16`, in the column order of `sql::APPEND`.
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
            .bind(self.ce_ids)
            .bind(self.dataschemas)
            .bind(self.extensions)
    }
}

impl Backend for Postgres {
    fn table_names(sql: &str) -> Cow<'_, str> {
        Cow::Borrowed(sql)
    }

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    async fn fetch(pool: &PgPool, statement: Statement<Self>) -> Result<Vec<PgRow>> {
        Ok(bound(&statement).fetch_all(pool).await?)
    }

    async fn execute(pool: &PgPool, statement: Statement<Self>) -> Result<u64> {
        Ok(bound(&statement).execute(pool).await?.rows_affected())
    }

    fn text(row: &PgRow, column: &str) -> Result<String> {
        Ok(row.try_get(column)?)
    }

    fn optional_text(row: &PgRow, column: &str) -> Result<Option<String>> {
        Ok(row.try_get(column)?)
    }

    fn int(row: &PgRow, column: &str) -> Result<i64> {
        Ok(row.try_get(column)?)
    }

    fn optional_int(row: &PgRow, column: &str) -> Result<Option<i64>> {
        Ok(row.try_get(column)?)
    }

    fn count(row: &PgRow, column: &str) -> Result<u32> {
        Ok(queue::count(i64::from(row.try_get::<i32, _>(column)?)))
    }

    fn time(row: &PgRow, column: &str) -> Result<DateTime<Utc>> {
        Ok(row.try_get(column)?)
    }

    fn uuid(row: &PgRow, column: &str) -> Result<Uuid> {
        Ok(row.try_get(column)?)
    }

    fn json(row: &PgRow, column: &str) -> Result<Option<serde_json::Value>> {
        Ok(row.try_get(column)?)
    }
}

/// `statement` with its parameters bound.
fn bound(statement: &Statement<Postgres>) -> Query<'_, Postgres, PgArguments> {
    let mut query = sqlx::query(statement.sql());
    for param in statement.params() {
        query = match param {
            Param::Text(text) => query.bind(text.clone()),
            Param::Int(value) => query.bind(*value),
            Param::Time(time) => query.bind(time),
            Param::Uuid(id) => query.bind(*id),
        };
    }
    query
}
