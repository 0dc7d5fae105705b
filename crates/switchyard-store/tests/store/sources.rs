//! What sources keep in the store: positions that commit with their events, and
//! rejected inputs.

use std::sync::Arc;

use serde_json::json;
use switchyard_store::{Appended, Store};

use crate::support::*;

pub async fn positions_commit_with_their_events(store: Arc<dyn Store>) {
    assert_eq!(store.source_position("bucket").await.unwrap(), None);

    let first = event("bucket", "s3.object.created").with_dedupe_key("a@1");
    let position = json!({"objects": {"a": {"etag": "1"}}});
    let appended = store
        .append_with_position("bucket", &[to(&first, &["t"])], &position)
        .await
        .unwrap();
    assert_eq!(appended, [Appended::Created(first.switchyard_id)]);
    assert_eq!(
        store.source_position("bucket").await.unwrap(),
        Some(position)
    );
    assert_eq!(claim(&store, &["t"], 10).await.len(), 1, "deliveries too");

    // A replayed diff (another process, or a retry) dedupes, and the position moves on.
    let again = event("bucket", "s3.object.created").with_dedupe_key("a@1");
    let second = event("bucket", "s3.object.removed").with_dedupe_key("a@1:removed");
    let position = json!({"objects": {}});
    let appended = store
        .append_with_position(
            "bucket",
            &[to(&again, &["t"]), to(&second, &["t"])],
            &position,
        )
        .await
        .unwrap();
    assert_eq!(
        appended,
        [
            Appended::Duplicate(first.switchyard_id),
            Appended::Created(second.switchyard_id)
        ]
    );
    assert_eq!(
        store.source_position("bucket").await.unwrap(),
        Some(position.clone())
    );

    // No events at all still saves the position; other sources are untouched.
    let quiet = json!({"objects": {"b": {"etag": "2"}}});
    assert!(
        store
            .append_with_position("other", &[], &quiet)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.source_position("other").await.unwrap(), Some(quiet));
    assert_eq!(
        store.source_position("bucket").await.unwrap(),
        Some(position)
    );
}

pub async fn rejected_inputs_are_kept_once_newest_first(store: Arc<dyn Store>) {
    assert!(
        store
            .reject_input("uploads", "m-1", "not JSON", "garbage")
            .await
            .unwrap()
    );
    assert!(
        !store
            .reject_input("uploads", "m-1", "not JSON", "garbage")
            .await
            .unwrap(),
        "a redelivered input is recorded once"
    );
    assert!(
        store
            .reject_input("uploads", "m-2", "not an S3 notification", "{}")
            .await
            .unwrap()
    );
    assert!(
        store
            .reject_input("other", "m-1", "not JSON", "x")
            .await
            .unwrap(),
        "ids are per source"
    );

    let uploads = store.list_rejected(Some("uploads"), 0).await.unwrap();
    let ids: Vec<&str> = uploads.iter().map(|r| r.input_id.as_str()).collect();
    assert_eq!(ids, ["m-2", "m-1"]);
    assert_eq!(uploads[1].reason, "not JSON");
    assert_eq!(uploads[1].body, "garbage");
    assert_eq!(uploads[1].source_name, "uploads");
    assert!(uploads[0].received_at >= uploads[1].received_at);
    assert_eq!(store.list_rejected(None, 0).await.unwrap().len(), 3);
    assert_eq!(store.list_rejected(None, 1).await.unwrap().len(), 1);
}
