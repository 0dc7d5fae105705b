//! The Postgres append: a batch of events and their deliveries in one statement, then
//! a lookup of the originals of the duplicates.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::sql;
use super::values::EventColumns;
use crate::queue;
use crate::{Appended, Claimed, Lease, NewEvent, Result};

/// Appends a batch with one [`sql::APPEND`], then looks up the originals of events
/// that were duplicates by dedupe key. On a connection outside a transaction, the
/// append commits on its own. With a `lease`, deliveries marked `claim` (and without an
/// ordering key) are created claimed and returned.
pub(super) async fn append_in(
    conn: &mut PgConnection,
    batch: &[NewEvent],
    lease: Option<Duration>,
) -> Result<(Vec<Appended>, Vec<Claimed>)> {
    let lease_ms = lease.map(queue::lease_millis).transpose()?;
    let token = Uuid::new_v4();
    // Within the batch, a repeated id or dedupe key refers to its first occurrence;
    // only first occurrences go to the database.
    let mut repeats: Vec<Option<usize>> = vec![None; batch.len()];
    let mut seen_ids: HashMap<Uuid, usize> = HashMap::new();
    let mut seen_keys: HashMap<(&str, &str), usize> = HashMap::new();
    let mut columns = EventColumns::default();
    let (mut event_ids, mut triggers, mut ordering_keys) = (Vec::new(), Vec::new(), Vec::new());
    let mut claims = Vec::new();
    for (i, item) in batch.iter().enumerate() {
        let event = &item.event;
        let key = event
            .dedupe_key
            .as_deref()
            .map(|key| (event.source_name.as_str(), key));
        let first = seen_ids
            .get(&event.switchyard_id)
            .or_else(|| key.and_then(|key| seen_keys.get(&key)))
            .copied();
        match first {
            Some(first) => repeats[i] = Some(first),
            None => {
                seen_ids.insert(event.switchyard_id, i);
                if let Some(key) = key {
                    seen_keys.insert(key, i);
                }
                columns.push(event);
                for delivery in &item.deliveries {
                    event_ids.push(event.switchyard_id);
                    triggers.push(delivery.trigger.as_str());
                    ordering_keys.push(delivery.ordering_key.as_deref());
                    claims
                        .push(lease.is_some() && delivery.claim && delivery.ordering_key.is_none());
                }
            }
        }
    }

    let rows = columns
        .bind(sqlx::query(sql::APPEND))
        .bind(&event_ids)
        .bind(&triggers)
        .bind(&ordering_keys)
        .bind(&claims)
        .bind(lease_ms.map(|_| token))
        .bind(lease_ms.unwrap_or(0))
        .fetch_all(&mut *conn)
        .await?;
    let mut inserted: HashSet<Uuid> = HashSet::new();
    let mut claimed = Vec::new();
    for row in &rows {
        let Some(event_id) = row.try_get::<Option<Uuid>, _>("event_id")? else {
            continue;
        };
        let Some(delivery_id) = row.try_get::<Option<i64>, _>("delivery_id")? else {
            inserted.insert(event_id);
            continue;
        };
        claimed.push(Claimed {
            lease: Lease { delivery_id, token },
            trigger: row.try_get("trigger")?,
            attempt: 1,
            created_at: row.try_get("created_at")?,
            claimed_at: row.try_get("claimed_at")?,
            event: batch[seen_ids[&event_id]].event.clone(),
        });
    }

    let (names, keys): (Vec<&str>, Vec<&str>) = batch
        .iter()
        .zip(&repeats)
        .filter(|(item, repeat)| repeat.is_none() && !inserted.contains(&item.event.switchyard_id))
        .filter_map(|(item, _)| {
            Some((
                item.event.source_name.as_str(),
                item.event.dedupe_key.as_deref()?,
            ))
        })
        .unzip();
    let mut originals: HashMap<(String, String), Uuid> = HashMap::new();
    if !names.is_empty() {
        let rows = sqlx::query(sql::FIND_ORIGINALS)
            .bind(&names)
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            originals.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
    }

    let mut results: Vec<Appended> = Vec::with_capacity(batch.len());
    for (item, repeat) in batch.iter().zip(&repeats) {
        let event = &item.event;
        let result = match *repeat {
            Some(first) => Appended::Duplicate(results[first].id()),
            None if inserted.contains(&event.switchyard_id) => {
                Appended::Created(event.switchyard_id)
            }
            // Not inserted: its dedupe key exists, or else its id does.
            None => {
                let original = event
                    .dedupe_key
                    .as_ref()
                    .and_then(|key| originals.get(&(event.source_name.clone(), key.clone())));
                Appended::Duplicate(original.copied().unwrap_or(event.switchyard_id))
            }
        };
        results.push(result);
    }
    Ok((results, claimed))
}
