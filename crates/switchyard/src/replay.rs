//! Replay: dispatching stored events again, shared by the CLI and the admin API.

use chrono::{DateTime, Utc};
use switchyard_core::Event;
use switchyard_store::{Store, StoreError};

use crate::router::Router;

/// Adds new deliveries of `event`: to `trigger` only, or to every trigger whose filter
/// matches. Returns the new delivery ids (empty when nothing matches).
pub async fn replay_event(
    store: &dyn Store,
    router: &Router,
    event: &Event,
    trigger: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let deliveries = router.routes(event, trigger);
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    store
        .add_deliveries(event.switchyard_id, &deliveries, None)
        .await
}

/// Replays every event received in `[since, until)`, optionally of one source, in
/// pages. Returns (events replayed, deliveries created).
pub async fn replay_window(
    store: &dyn Store,
    router: &Router,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    source: Option<&str>,
    trigger: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<(u64, u64), StoreError> {
    const PAGE: u32 = 500;
    let (mut events, mut deliveries) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = store
            .events_between(since, until, source, after, PAGE)
            .await?;
        for event in &page {
            deliveries += replay_event(store, router, event, trigger).await?.len() as u64;
            events += 1;
        }
        progress(events, deliveries);
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.switchyard_id),
            _ => break,
        }
    }
    Ok((events, deliveries))
}
