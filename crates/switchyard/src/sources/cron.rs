//! The `cron` source: fires `cron.tick` events on a schedule, exactly once per
//! scheduled time across any number of processes.
//!
//! Every process runs every schedule. Each fire is committed with the dedupe key
//! `cron:NAME:SCHEDULED_TIME`, so when several processes fire the same time, the
//! store keeps one event and the others get `Duplicate`: correctness does not depend
//! on any leader. The schedule's position (the latest scheduled time fired or
//! skipped) commits in the same transaction, and is where catch-up starts after a
//! restart.

use std::time::Duration;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use serde_json::json;
use switchyard_core::Event;
use switchyard_core::config::CronSource;
use switchyard_core::schedule::{Schedule, plan_catch_up};
use switchyard_store::{Appended, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::{BuildContext, Source, SourceDeps, SourceKind, StatusFields, retry};

/// Fires within this long after their time are on time, not missed: they are fired
/// by the running loop rather than by the start-up catch-up.
const ON_TIME: Duration = Duration::from_secs(2);
/// At most this many skipped fires are recorded one by one at start-up.
const MAX_RECORDED_SKIPS: usize = 10_000;
/// The longest single sleep; the loop re-reads the clock after it.
const MAX_SLEEP: Duration = Duration::from_secs(30);

#[async_trait::async_trait]
impl SourceKind for CronSource {
    async fn build(&self, name: &str, _context: &mut BuildContext) -> Option<Arc<dyn Source>> {
        let cron = CronRuntime::new(name.to_owned(), self.clone())?;
        Some(Arc::new(cron))
    }

    fn event_types(&self) -> Option<Vec<&'static str>> {
        Some(vec!["cron.tick"])
    }

    /// The tick the schedule would fire now ([`CronRuntime::tick`]), whose
    /// `data.payload` is `data` unless that is `{}` (then the configured payload, if
    /// any), and with no dedupe key: the scheduled fire of the same time still happens.
    fn synthetic_event(
        &self,
        name: &str,
        ty: Option<String>,
        data: serde_json::Value,
    ) -> Result<Event, String> {
        let runtime = CronRuntime {
            name: name.to_owned(),
            config: self.clone(),
            schedule: Schedule::parse(&self.schedule, &self.timezone)
                .map_err(|error| format!("source {name:?}: {error}"))?,
        };
        let now = Utc::now();
        let mut tick = runtime.tick(now, now);
        tick.dedupe_key = None;
        if data != json!({})
            && let Some(fields) = tick.data.as_mut()
        {
            fields["payload"] = data;
        }
        if let Some(ty) = ty {
            tick.ty = ty;
        }
        Ok(tick)
    }

    /// Its schedule and time zone, whether it is enabled, its next fire from now (UTC,
    /// `null` when disabled or when the schedule has no further fire), and its last
    /// fire: the schedule's stored position, the latest scheduled time fired or
    /// skipped (`null` before the first).
    async fn status(&self, name: &str, store: &dyn Store) -> Result<StatusFields, StoreError> {
        let next = Schedule::parse(&self.schedule, &self.timezone)
            .ok()
            .filter(|_| self.enabled)
            .and_then(|schedule| schedule.next_after(Utc::now()))
            .map(|next| rfc3339(next.with_timezone(&Utc)));
        let last = store.schedule_position(name).await?.map(rfc3339);
        Ok(vec![
            ("schedule", json!(self.schedule)),
            ("timezone", json!(self.timezone)),
            ("enabled", json!(self.enabled)),
            ("next_fire", json!(next)),
            ("last_fire", json!(last)),
        ])
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Source for CronRuntime {
    fn run(
        self: Arc<Self>,
        deps: SourceDeps,
        shutdown: CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(async move {
            self.run_until_shutdown(deps, shutdown).await;
        }))
    }
}

/// One configured cron source, ready to run.
pub struct CronRuntime {
    pub name: String,
    pub config: CronSource,
    pub schedule: Schedule,
}

impl CronRuntime {
    /// `None` for a disabled schedule. The expression was checked by `validate`.
    pub fn new(name: String, config: CronSource) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let schedule = Schedule::parse(&config.schedule, &config.timezone).ok()?;
        Some(Self {
            name,
            config,
            schedule,
        })
    }

    /// The tick event for `scheduled`, fired at `fired_at`.
    pub fn tick(&self, scheduled: DateTime<Utc>, fired_at: DateTime<Utc>) -> Event {
        let local = scheduled.with_timezone(&self.schedule.timezone());
        let mut data = json!({
            "scheduled_time": local.to_rfc3339_opts(SecondsFormat::Millis, false),
            "fired_at": fired_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "schedule": self.config.schedule,
            "timezone": self.config.timezone,
        });
        if let Some(payload) = &self.config.data {
            data["payload"] = payload.clone();
        }
        let mut event = Event::new(&self.name, format!("cron://{}", self.name), "cron.tick")
            .with_subject(&self.name)
            .with_json(data)
            .with_dedupe_key(dedupe_key(scheduled));
        event.time = scheduled;
        event
    }

    /// Runs until `shutdown`: first the catch-up of fires missed while no process ran,
    /// then each fire at its time.
    async fn run_until_shutdown(&self, deps: SourceDeps, shutdown: CancellationToken) {
        let Some(position) = retry(&shutdown, &self.name, "read the schedule position", || {
            deps.store.schedule_position(&self.name)
        })
        .await
        else {
            return;
        };
        let now = Utc::now();
        let on_time_from = now - chrono::Duration::from_std(ON_TIME).expect("a small duration");
        let mut cursor = match position {
            Some(position) => {
                self.catch_up(&deps, position, on_time_from, &shutdown)
                    .await;
                position.max(on_time_from)
            }
            // A schedule seen for the first time starts now: nothing was missed.
            None => now,
        };
        loop {
            let Some(next) = self
                .schedule
                .next_after(cursor)
                .map(|t| t.with_timezone(&Utc))
            else {
                tracing::warn!(source = %self.name, "the schedule has no further fire times");
                return;
            };
            loop {
                let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if wait.is_zero() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
            if self.fire(&deps, next, &[], &shutdown).await.is_none() {
                return;
            }
            cursor = next;
        }
    }

    async fn catch_up(
        &self,
        deps: &SourceDeps,
        position: DateTime<Utc>,
        until: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) {
        let limit = MAX_RECORDED_SKIPS + self.config.max_catch_up as usize;
        let missed: Vec<DateTime<Utc>> = self
            .schedule
            .between(position, until, limit)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        if missed.is_empty() {
            return;
        }
        let plan = plan_catch_up(
            &missed,
            self.config.catch_up,
            self.config.max_catch_up as usize,
            self.config.max_age,
            Utc::now(),
        );
        tracing::info!(source = %self.name, missed = missed.len(), firing = plan.fire.len(), skipping = plan.skip.len(), "catching up");
        if plan.fire.is_empty() {
            let last = *missed.last().expect("not empty");
            let record = || deps.store.record_fire(&self.name, None, &plan.skip, last);
            retry(shutdown, &self.name, "record skipped fires", record).await;
            return;
        }
        // Skips older than the first fire commit with it; the rest with later fires.
        for (i, scheduled) in plan.fire.iter().enumerate() {
            let skipped: Vec<DateTime<Utc>> = plan
                .skip
                .iter()
                .copied()
                .filter(|t| t < scheduled && (i == 0 || *t > plan.fire[i - 1]))
                .collect();
            if self
                .fire(deps, *scheduled, &skipped, shutdown)
                .await
                .is_none()
            {
                return;
            }
        }
        let trailing: Vec<DateTime<Utc>> = plan
            .skip
            .iter()
            .copied()
            .filter(|t| t > plan.fire.last().expect("not empty"))
            .collect();
        if let Some(last) = trailing.last().copied() {
            retry(shutdown, &self.name, "record skipped fires", || {
                deps.store.record_fire(&self.name, None, &trailing, last)
            })
            .await;
        }
    }

    /// Commits the fire of `scheduled` (and any `skipped` before it). `None` only when
    /// shutdown interrupted the retries.
    async fn fire(
        &self,
        deps: &SourceDeps,
        scheduled: DateTime<Utc>,
        skipped: &[DateTime<Utc>],
        shutdown: &CancellationToken,
    ) -> Option<Appended> {
        let fired_at = Utc::now();
        let event = self.tick(scheduled, fired_at);
        let new = deps.route(event);
        let appended = retry(shutdown, &self.name, "commit a cron fire", || {
            deps.store
                .record_fire(&self.name, Some(&new), skipped, scheduled)
        })
        .await?
        .expect("a fire returns its event");
        if let Appended::Created(_) = appended {
            let lateness = (Utc::now() - scheduled).to_std().unwrap_or_default();
            deps.metrics.cron_fired(&self.name, lateness.as_secs_f64());
            deps.metrics.event_received(&self.name);
            if !new.deliveries.is_empty() {
                deps.wake.notify_one();
            }
        }
        Some(appended)
    }
}

/// The dedupe key of a fire: one event per schedule and scheduled instant.
pub fn dedupe_key(scheduled: DateTime<Utc>) -> String {
    format!(
        "cron:{}",
        scheduled.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_carry_the_scheduled_time_with_its_offset() {
        let config: CronSource = serde_json::from_value(json!({
            "schedule": "0 0 2 * * *", "timezone": "Europe/Berlin", "data": {"job": "nightly"}
        }))
        .unwrap();
        let runtime = CronRuntime::new("nightly".into(), config).unwrap();
        let scheduled = DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = runtime.tick(scheduled, scheduled + chrono::Duration::milliseconds(7));
        assert_eq!(event.ty, "cron.tick");
        assert_eq!(event.source, "cron://nightly");
        assert_eq!(event.subject.as_deref(), Some("nightly"));
        assert_eq!(event.time, scheduled);
        let data = event.data.unwrap();
        assert_eq!(data["scheduled_time"], "2026-07-01T02:00:00.000+02:00");
        assert_eq!(data["fired_at"], "2026-07-01T00:00:00.007Z");
        assert_eq!(data["timezone"], "Europe/Berlin");
        assert_eq!(data["payload"], json!({"job": "nightly"}));
        assert_eq!(
            event.dedupe_key.as_deref(),
            Some("cron:2026-07-01T00:00:00.000Z")
        );
    }
}
