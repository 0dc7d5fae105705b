//! Polling mode: list the bucket every interval, compare the listing with the previous
//! one, and commit the differences as events together with the new listing.
//!
//! The listing is the source's position in `source_positions`, and it commits in the
//! same transaction as the events it accounts for: after a restart nothing is emitted
//! twice and nothing is missed. The first listing of a source that has no position yet
//! announces every object already there.
//!
//! A new key is `Polling:Created`, a key whose etag or modification time changed is
//! `Polling:Updated` (both `s3.object.created`), and a key that went away is
//! `Polling:Removed` (`s3.object.removed`). Their dedupe keys are built from the etag
//! and modification time, so processes polling the same bucket make one event per
//! change between them.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::Event;
use switchyard_core::config::ObjectChange;
use switchyard_store::NewEvent;
use tokio_util::sync::CancellationToken;

use super::{ObjectRecord, S3Runtime};
use crate::sources::{SourceDeps, retry};

/// A bucket listing, as saved in `source_positions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Listing {
    /// The bucket listed; a saved listing of another bucket is not compared against.
    bucket: String,
    /// Every key under the prefix that ends with the suffix.
    objects: BTreeMap<String, ObjectState>,
}

/// What a listing says about one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ObjectState {
    etag: String,
    size: u64,
    last_modified: DateTime<Utc>,
}

/// Lists, compares and commits every `interval` until `shutdown`.
pub(super) async fn run(
    source: &S3Runtime,
    interval: Duration,
    deps: &SourceDeps,
    shutdown: &CancellationToken,
) {
    let name = &source.name;
    let Some(saved) = retry(shutdown, name, "read the saved listing", || {
        deps.store.source_position(name)
    })
    .await
    else {
        return;
    };
    let mut known = restore(source, saved);
    loop {
        let listed = tokio::select! {
            listed = list(source) => listed,
            () = shutdown.cancelled() => return,
        };
        match listed {
            Ok(listing) => {
                let changes = diff(&known, &listing);
                if !changes.is_empty() {
                    let mut quarantined = Vec::new();
                    let mut events: Vec<NewEvent> = Vec::new();
                    for event in changes.iter().filter_map(|record| source.event(record)) {
                        match event.check_storable() {
                            Ok(()) => events.push(deps.route(event)),
                            Err(error) => quarantined.push((event, error.to_string())),
                        }
                    }
                    let position = serde_json::to_value(&listing).expect("a listing is JSON");
                    let commit = || deps.store.append_with_position(name, &events, &position);
                    let Some(refused) = deps.commit(name, &events, shutdown, commit).await else {
                        return;
                    };
                    if !refused.is_empty() {
                        // The parts committed without the listing; it commits now.
                        let save = || deps.store.append_with_position(name, &[], &position);
                        if retry(shutdown, name, "save the listing", save)
                            .await
                            .is_none()
                        {
                            return;
                        }
                    }
                    quarantined.extend(
                        refused
                            .into_iter()
                            .map(|refused| (events[refused.index].event.clone(), refused.reason)),
                    );
                    if quarantine(source, deps, quarantined, shutdown)
                        .await
                        .is_none()
                    {
                        return;
                    }
                    tracing::debug!(source = %name, changes = changes.len(), events = events.len(), "committed a listing");
                }
                known = listing;
            }
            Err(error) => {
                tracing::warn!(source = %name, error = %DisplayErrorContext(&error), "could not list the bucket");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Records changes whose events the log cannot store as rejected inputs, named by
/// the event's dedupe key (the object's key and revision), with the event as JSON.
/// `None` on shutdown.
async fn quarantine(
    source: &S3Runtime,
    deps: &SourceDeps,
    quarantined: Vec<(Event, String)>,
    shutdown: &CancellationToken,
) -> Option<()> {
    let name = &source.name;
    for (event, reason) in quarantined {
        tracing::warn!(source = %name, id = %event.switchyard_id, %reason, "quarantining a change whose event cannot be stored");
        let input_id = event
            .dedupe_key
            .clone()
            .unwrap_or_else(|| event.switchyard_id.to_string());
        let body = serde_json::to_string(&event).expect("an event is JSON");
        let record = || deps.store.reject_input(name, &input_id, &reason, &body);
        if retry(shutdown, name, "record a rejected change", record).await? {
            deps.metrics.input_rejected(name);
        }
    }
    Some(())
}

/// How many objects the listing saved for `bucket` holds; `None` when `saved` is not
/// a listing of that bucket (the next poll starts afresh).
pub(super) fn saved_objects(bucket: &str, saved: serde_json::Value) -> Option<usize> {
    serde_json::from_value::<Listing>(saved)
        .ok()
        .filter(|listing| listing.bucket == bucket)
        .map(|listing| listing.objects.len())
}

/// The listing to compare the first poll against: the saved one, narrowed to the
/// current prefix and suffix, or an empty one.
fn restore(source: &S3Runtime, saved: Option<serde_json::Value>) -> Listing {
    let config = &source.config;
    let empty = Listing {
        bucket: config.bucket.clone(),
        objects: BTreeMap::new(),
    };
    let Some(saved) = saved else {
        return empty;
    };
    match serde_json::from_value::<Listing>(saved) {
        Ok(mut listing) if listing.bucket == config.bucket => {
            listing
                .objects
                .retain(|key, _| key.starts_with(&config.prefix) && key.ends_with(&config.suffix));
            listing
        }
        Ok(_) => {
            tracing::info!(source = %source.name, "the saved listing is of another bucket; starting afresh");
            empty
        }
        Err(error) => {
            tracing::warn!(source = %source.name, %error, "the saved listing does not decode; starting afresh");
            empty
        }
    }
}

/// Every object under the prefix that ends with the suffix, through every page.
async fn list(
    source: &S3Runtime,
) -> Result<
    Listing,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error>,
> {
    let config = &source.config;
    let mut listing = Listing {
        bucket: config.bucket.clone(),
        objects: BTreeMap::new(),
    };
    let mut pages = source
        .clients
        .s3
        .list_objects_v2()
        .bucket(&config.bucket)
        .prefix(&config.prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page?.contents.unwrap_or_default() {
            let Some(key) = object.key else { continue };
            if !key.ends_with(&config.suffix) {
                continue;
            }
            let last_modified = object
                .last_modified
                .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                .unwrap_or_default();
            let etag = object.e_tag.unwrap_or_default();
            listing.objects.insert(
                key,
                ObjectState {
                    etag: etag.trim_matches('"').to_owned(),
                    size: object.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    last_modified,
                },
            );
        }
    }
    Ok(listing)
}

/// The changes from `before` to `after`: creations and updates in key order, then
/// removals.
pub(super) fn diff(before: &Listing, after: &Listing) -> Vec<ObjectRecord> {
    let record = |change, event_name: &str, key: &str, state: &ObjectState| ObjectRecord {
        change,
        event_name: event_name.to_owned(),
        bucket: after.bucket.clone(),
        key: key.to_owned(),
        size: Some(state.size),
        etag: Some(state.etag.clone()),
        version_id: None,
        sequencer: None,
        region: None,
        time: (change == ObjectChange::Created).then_some(state.last_modified),
        last_modified: Some(state.last_modified),
    };
    let mut changes = Vec::new();
    for (key, state) in &after.objects {
        match before.objects.get(key) {
            None => changes.push(record(ObjectChange::Created, "Polling:Created", key, state)),
            Some(old) if old != state => {
                changes.push(record(ObjectChange::Created, "Polling:Updated", key, state));
            }
            Some(_) => {}
        }
    }
    for (key, state) in &before.objects {
        if !after.objects.contains_key(key) {
            changes.push(record(ObjectChange::Removed, "Polling:Removed", key, state));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(objects: &[(&str, &str, i64)]) -> Listing {
        Listing {
            bucket: "b".into(),
            objects: objects
                .iter()
                .map(|(key, etag, secs)| {
                    (
                        (*key).to_owned(),
                        ObjectState {
                            etag: (*etag).to_owned(),
                            size: 3,
                            last_modified: DateTime::from_timestamp(*secs, 0).unwrap(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn names(changes: &[ObjectRecord]) -> Vec<(String, String)> {
        changes
            .iter()
            .map(|c| (c.event_name.clone(), c.key.clone()))
            .collect()
    }

    #[test]
    fn diff_finds_creations_updates_and_removals() {
        let before = listing(&[
            ("a", "1", 10),
            ("b", "1", 10),
            ("c", "1", 10),
            ("d", "1", 10),
        ]);
        let after = listing(&[
            ("a", "1", 10),
            ("b", "2", 20),
            ("c", "1", 30),
            ("e", "1", 40),
        ]);
        let changes = diff(&before, &after);
        let expected: Vec<(String, String)> = [
            ("Polling:Updated", "b"),
            ("Polling:Updated", "c"),
            ("Polling:Created", "e"),
            ("Polling:Removed", "d"),
        ]
        .iter()
        .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
        .collect();
        assert_eq!(names(&changes), expected);
        assert_eq!(changes[3].change, ObjectChange::Removed);
        assert_eq!(
            changes[3].etag.as_deref(),
            Some("1"),
            "a removal carries what was removed"
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn recreating_identical_content_is_a_new_revision() {
        let first = listing(&[("a", "1", 10)]);
        let again = listing(&[("a", "1", 50)]);
        let empty = listing(&[]);
        let created = diff(&empty, &first);
        let recreated = diff(&empty, &again);
        assert_ne!(created[0].dedupe_key(), recreated[0].dedupe_key());
        // The same change seen by two pollers has one key.
        assert_eq!(
            created[0].dedupe_key(),
            diff(&empty, &first)[0].dedupe_key()
        );
    }

    #[test]
    fn listings_round_trip_as_positions() {
        let saved = listing(&[("a b/c.txt", "1", 10)]);
        let json = serde_json::to_value(&saved).unwrap();
        assert_eq!(json["objects"]["a b/c.txt"]["etag"], "1");
        assert_eq!(serde_json::from_value::<Listing>(json).unwrap(), saved);
    }
}
