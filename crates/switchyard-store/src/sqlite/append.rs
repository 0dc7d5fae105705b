//! The SQLite append: a batch of events and their deliveries in multi-row inserts,
//! inside the caller's write transaction.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::sql;
use super::values::{lease_end, parse_uuid, timestamp, uuid_text};
use crate::queue;
use crate::{Appended, Claimed, Lease, NewEvent, Result, StoreError};

/// Rows per multi-row insert: 16 columns by 1,000 rows stays under SQLite's 32,766
/// bound parameters.
const ROWS_PER_INSERT: usize = 1_000;

/// The body of [`Store::append_claiming`], inside the caller's write transaction: a
/// multi-row insert of the events, then one of the deliveries of those inserted (per
/// 1,000 rows). Without a `lease` every delivery is created pending.
pub(super) async fn append_in(
    tx: &mut SqliteConnection,
    batch: &[NewEvent],
    lease: Option<Duration>,
) -> Result<(Vec<Appended>, Vec<Claimed>)> {
    let now_at = Utc::now();
    let now = timestamp(now_at);
    let token = Uuid::new_v4();
    let token_text = uuid_text(token);
    let lease_end = lease
        .map(|lease| lease_end(now_at, lease).map(timestamp))
        .transpose()?;

    let ids: Vec<String> = batch
        .iter()
        .map(|item| uuid_text(item.event.switchyard_id))
        .collect();
    let mut inserted = HashSet::new();
    for (items, item_ids) in batch
        .chunks(ROWS_PER_INSERT)
        .zip(ids.chunks(ROWS_PER_INSERT))
    {
        let mut insert = QueryBuilder::<Sqlite>::new(sql::INSERT_EVENTS_HEAD);
        insert.push_values(items.iter().zip(item_ids), |mut row, (item, id)| {
            let event = &item.event;
            row.push_bind(id)
                .push_bind(&event.source_name)
                .push_bind(&event.source)
                .push_bind(&event.ty)
                .push_bind(&event.subject)
                .push_bind(timestamp(event.time))
                .push_bind(&event.datacontenttype)
                .push_bind(event.data.as_ref().map(serde_json::Value::to_string))
                .push_bind(&event.data_base64)
                .push_bind(&event.partitionkey)
                .push_bind(&event.traceparent)
                .push_bind(&event.dedupe_key)
                .push_bind(timestamp(event.received_at))
                .push_bind(queue::ce_id(event))
                .push_bind(&event.dataschema)
                .push_bind(
                    queue::extensions(event)
                        .map(|map| serde_json::Value::from_iter(map.clone()).to_string()),
                );
        });
        insert.push(sql::INSERT_EVENTS_TAIL);
        for row in insert.build().persistent(false).fetch_all(&mut *tx).await? {
            inserted.insert((
                row.try_get::<String, _>("id")?,
                row.try_get::<String, _>("source_name")?,
                row.try_get::<Option<String>, _>("dedupe_key")?,
            ));
        }
    }

    // In batch order, so that of two entries alike only the first counts as inserted.
    let mut results = Vec::with_capacity(batch.len());
    // (position in the batch, delivery, created claimed)
    let mut deliveries = Vec::new();
    for (position, (item, id)) in batch.iter().zip(&ids).enumerate() {
        let event = &item.event;
        let key = (
            id.clone(),
            event.source_name.clone(),
            event.dedupe_key.clone(),
        );
        if inserted.remove(&key) {
            for delivery in &item.deliveries {
                let claim =
                    lease_end.is_some() && delivery.claim && delivery.ordering_key.is_none();
                deliveries.push((position, delivery, claim));
            }
            results.push(Appended::Created(event.switchyard_id));
            continue;
        }
        // Not inserted: its dedupe key exists (possibly from earlier in this batch),
        // or else its id does.
        let original: Option<String> = match &event.dedupe_key {
            Some(key) => {
                sqlx::query_scalar(sql::FIND_ORIGINAL)
                    .bind(&event.source_name)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let original = original.as_deref().map(parse_uuid).transpose()?;
        results.push(Appended::Duplicate(original.unwrap_or(event.switchyard_id)));
    }

    // An event has one delivery per trigger, so (event, trigger) names a new row.
    let mut delivery_ids = HashMap::new();
    for chunk in deliveries.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(sql::INSERT_DELIVERIES_HEAD);
        insert.push_values(chunk, |mut row, &(position, delivery, claim)| {
            row.push_bind(&ids[position])
                .push_bind(&delivery.trigger)
                .push_bind(&delivery.ordering_key)
                .push_bind(&now)
                .push_bind(&now)
                .push_bind(&now)
                .push_bind(i64::from(claim))
                .push_bind(claim.then(|| token_text.clone()))
                .push_bind(lease_end.clone().filter(|_| claim))
                .push_bind(claim.then(|| now.clone()));
        });
        insert.push(sql::INSERT_DELIVERIES_TAIL);
        for row in insert.build().persistent(false).fetch_all(&mut *tx).await? {
            let key: (String, String) = (row.try_get("event_id")?, row.try_get("trigger")?);
            delivery_ids.insert(key, row.try_get::<i64, _>("id")?);
        }
    }

    let mut claimed = Vec::new();
    for &(position, delivery, claim) in &deliveries {
        if !claim {
            continue;
        }
        let key = (ids[position].clone(), delivery.trigger.clone());
        let delivery_id = *delivery_ids.get(&key).ok_or_else(|| {
            StoreError::Invalid(format!(
                "the delivery of event {} to {:?} was not created",
                key.0, key.1
            ))
        })?;
        claimed.push(Claimed {
            lease: Lease { delivery_id, token },
            trigger: delivery.trigger.clone(),
            attempt: 1,
            created_at: now_at,
            claimed_at: now_at,
            event: batch[position].event.clone(),
        });
    }
    Ok((results, claimed))
}
