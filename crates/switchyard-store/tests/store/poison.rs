//! Values no database could hold as they are: the store keeps them storable (error
//! texts, rejected inputs) or digests them (keys too long or odd for an index), so
//! that no result or input can fail a write.

use std::sync::Arc;

use switchyard_store::{AttemptOutcome, Finished, Store};

use crate::support::*;

pub async fn unstorable_texts_are_recorded_safely(store: Arc<dyn Store>) {
    let e = event("s", "x");
    store.append(&[to(&e, &["t", "u"])]).await.unwrap();
    let claimed = claim(&store, &["t", "u"], 10).await;
    assert_eq!(claimed.len(), 2);
    let huge = format!("a\0b{}", "x".repeat(100_000));
    let results = [
        finished(&claimed[0], AttemptOutcome::Retry, None, Some(&huge)),
        finished(&claimed[1], AttemptOutcome::Dead, None, Some("nul\0here")),
    ];
    assert_eq!(store.finish(&results).await.unwrap(), [true, true]);
    let detail = store.get_event(e.switchyard_id).await.unwrap().unwrap();
    let retried = &detail.deliveries[0];
    let error = retried.last_error.as_deref().unwrap();
    assert!(error.starts_with("a\u{FFFD}bxxx"), "{}", &error[..20]);
    assert!(
        error.ends_with("more bytes not kept)"),
        "{}",
        &error[error.len() - 40..]
    );
    assert!(error.len() < 20_000, "{} bytes", error.len());
    assert_eq!(retried.attempt_log[0].error.as_deref(), Some(error));
    assert_eq!(
        detail.deliveries[1].last_error.as_deref(),
        Some("nul\u{FFFD}here")
    );

    assert!(
        store
            .reject_input("s", "id\0", "why\0", "body\0")
            .await
            .unwrap()
    );
    let rejected = store.list_rejected(Some("s"), 10).await.unwrap();
    assert_eq!(rejected[0].reason, "why\u{FFFD}");
    assert_eq!(rejected[0].body, "body\u{FFFD}");
    assert!(rejected[0].input_id.starts_with("sha256:"));
    assert!(
        !store
            .reject_input("s", "id\0", "again", "again")
            .await
            .unwrap(),
        "the digested id still dedupes"
    );
}

/// Every attempt keeps its output: a retried one in its own row, a final one on its
/// delivery's row, a success too; NUL becomes U+FFFD and the store keeps 16 KiB.
pub async fn attempt_output_is_kept_for_every_outcome(store: Arc<dyn Store>) {
    let e = event("s", "x");
    store.append(&[to(&e, &["t", "u"])]).await.unwrap();
    let claimed = claim(&store, &["t", "u"], 10).await;
    let with_output = |claimed, outcome, output: &str| Finished {
        output: Some(output.to_owned()),
        ..finished(claimed, outcome, None, None)
    };
    let huge = format!("o\0ut{}", "y".repeat(40_000));
    let results = [
        with_output(&claimed[0], AttemptOutcome::Retry, "stdout:\nfirst try"),
        with_output(&claimed[1], AttemptOutcome::Succeeded, &huge),
    ];
    assert_eq!(store.finish(&results).await.unwrap(), [true, true]);
    let again = claim_one(&store, "t").await;
    let last = with_output(&again, AttemptOutcome::Dead, "status: 500\nnope");
    assert_eq!(store.finish(&[last]).await.unwrap(), [true]);

    let detail = store.get_event(e.switchyard_id).await.unwrap().unwrap();
    let by_trigger = |t: &str| detail.deliveries.iter().find(|d| d.trigger == t).unwrap();
    let outputs: Vec<Option<&str>> = by_trigger("t")
        .attempt_log
        .iter()
        .map(|a| a.output.as_deref())
        .collect();
    assert_eq!(
        outputs,
        [Some("stdout:\nfirst try"), Some("status: 500\nnope")]
    );
    let kept = by_trigger("u").attempt_log[0].output.as_deref().unwrap();
    assert!(kept.starts_with("o\u{FFFD}utyyy"), "{}", &kept[..20]);
    assert!(
        kept.ends_with("more bytes not kept)"),
        "{}",
        &kept[kept.len() - 40..]
    );
    assert!(kept.len() < 17 * 1024, "{} bytes", kept.len());
    let shown = store
        .get_delivery(by_trigger("t").id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shown.attempt_log[1].output.as_deref(),
        Some("status: 500\nnope")
    );
}

pub async fn keys_too_long_for_an_index_still_dedupe_and_order(store: Arc<dyn Store>) {
    let long_key = "k".repeat(10_000);
    let first = event("s", "x").with_dedupe_key(long_key.clone());
    let again = event("s", "x").with_dedupe_key(long_key);
    let appended = store.append(&[to(&first, &["t"])]).await.unwrap();
    assert_eq!(appended[0].id(), first.switchyard_id);
    let appended = store.append(&[to(&again, &["t"])]).await.unwrap();
    assert_eq!(
        appended,
        [switchyard_store::Appended::Duplicate(first.switchyard_id)],
        "a digested key dedupes like the key"
    );
    let stored = store.get_event(first.switchyard_id).await.unwrap().unwrap();
    assert!(stored.dedupe_key.unwrap().starts_with("sha256:"));

    // Two deliveries of one long ordering key run one at a time.
    let order_key = "o".repeat(10_000);
    let (a, b) = (event("s", "x"), event("s", "x"));
    store
        .append(&[
            keyed(&a, "ordered", &order_key),
            keyed(&b, "ordered", &order_key),
        ])
        .await
        .unwrap();
    let claimed = claim(&store, &["ordered"], 10).await;
    assert_eq!(
        event_ids(&claimed),
        [a.switchyard_id],
        "the key's head only"
    );
}
