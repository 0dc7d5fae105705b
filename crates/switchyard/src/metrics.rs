//! Prometheus metrics, served as text on `/metrics`.
//!
//! Counters and histograms are updated as things happen; queue figures (depth, oldest
//! pending age, dead letters) are read from the store at scrape time, so they are
//! true across every process sharing the store. The deliveries this process holds
//! are read from its dispatcher at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::Utc;
use switchyard_store::{AttemptOutcome, QueueStats, RetentionDeleted, RetentionDue};

/// One trigger's deliveries in this process, as the dispatcher reports them
/// (`Dispatcher::occupancy`) for [`Metrics::render`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupancy {
    pub trigger: String,
    pub running: usize,
    pub waiting: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    trigger: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    trigger: String,
    via: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeldLabels {
    trigger: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    source: String,
    status: u16,
}

/// How a process came to hold a delivery, for `switchyard_deliveries_claimed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimedVia {
    /// Local ingress created it claimed (claim on append).
    Append,
    /// A claim took it from the queue.
    Queue,
}

impl ClaimedVia {
    fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Queue => "queue",
        }
    }
}

/// One trigger's delivery series; see [`Metrics::trigger`]. Cheap to clone: the
/// handles share the registered series.
#[derive(Clone)]
pub struct TriggerMetrics {
    succeeded: Counter,
    retried: Counter,
    dead: Counter,
    duration: Histogram,
    claimed_on_append: Counter,
    claimed_from_queue: Counter,
}

impl TriggerMetrics {
    /// `count` deliveries of this trigger claimed, `via` one way.
    pub fn claimed(&self, via: ClaimedVia, count: u64) {
        match via {
            ClaimedVia::Append => &self.claimed_on_append,
            ClaimedVia::Queue => &self.claimed_from_queue,
        }
        .inc_by(count);
    }

    /// An attempt of this trigger finished with `outcome` after `seconds`. A handler's
    /// attempt is never `abandoned` (the store records those when it reclaims a
    /// lease), and no series counts them.
    pub fn attempt_finished(&self, outcome: AttemptOutcome, seconds: f64) {
        let counter = match outcome {
            AttemptOutcome::Succeeded => &self.succeeded,
            AttemptOutcome::Retry => &self.retried,
            AttemptOutcome::Dead => &self.dead,
            AttemptOutcome::Abandoned => return,
        };
        counter.inc();
        self.duration.observe(seconds);
    }
}

/// Every metric the engine exports.
pub struct Metrics {
    registry: Registry,
    events_received: Family<SourceLabels, Counter>,
    requests_rejected: Family<RejectLabels, Counter>,
    inputs_rejected: Family<SourceLabels, Counter>,
    attempts: Family<OutcomeLabels, Counter>,
    claims: Family<ClaimLabels, Counter>,
    attempt_duration: Family<TriggerLabels, Histogram>,
    queue_depth: Family<TriggerLabels, Gauge>,
    dead_letters: Family<TriggerLabels, Gauge>,
    oldest_pending: Gauge<f64, AtomicU64>,
    held: Family<HeldLabels, Gauge>,
    cron_lateness: Family<SourceLabels, Histogram>,
    retention_deleted: Family<TableLabels, Counter>,
    oldest_row_age: Family<TableLabels, Gauge<f64, AtomicU64>>,
    /// The oldest row of each table retention covers, as its last run found them.
    oldest_rows: Mutex<Vec<RetentionDue>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let events_received = Family::default();
        registry.register(
            "events_received",
            "Events committed to the log, per source",
            events_received.clone(),
        );
        let requests_rejected = Family::default();
        registry.register(
            "requests_rejected",
            "HTTP source requests answered with an error, per source and status",
            requests_rejected.clone(),
        );
        let inputs_rejected = Family::default();
        registry.register(
            "inputs_rejected",
            "Inputs a source received but could not turn into events (kept in rejected_inputs), per source",
            inputs_rejected.clone(),
        );
        let attempts = Family::default();
        registry.register(
            "deliveries",
            "Finished delivery attempts, per trigger and outcome (succeeded, retry, dead)",
            attempts.clone(),
        );
        let claims = Family::default();
        registry.register(
            "deliveries_claimed",
            "Deliveries this process claimed, per trigger and how: `append` (claimed as local ingress created them) or `queue` (claimed from the queue)",
            claims.clone(),
        );
        let attempt_duration = Family::<TriggerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
        });
        registry.register(
            "attempt_duration_seconds",
            "How long handler attempts took",
            attempt_duration.clone(),
        );
        let queue_depth = Family::default();
        registry.register(
            "queue_depth",
            "Pending and running deliveries, per trigger",
            queue_depth.clone(),
        );
        let dead_letters = Family::default();
        registry.register(
            "dead_letters",
            "Dead-lettered deliveries, per trigger",
            dead_letters.clone(),
        );
        let oldest_pending = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_pending_age_seconds",
            "Age of the oldest runnable pending delivery",
            oldest_pending.clone(),
        );
        let held = Family::default();
        registry.register(
            "deliveries_held",
            "Deliveries this process holds the lease of, per trigger and state: `running` (or about to start) and `waiting` for a slot (claimed ahead, see dispatcher.prefetch)",
            held.clone(),
        );
        let cron_lateness = Family::<SourceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
            ])
        });
        registry.register(
            "cron_lateness_seconds",
            "How long after its scheduled time each cron fire was committed",
            cron_lateness.clone(),
        );
        let retention_deleted = Family::default();
        registry.register(
            "retention_deleted_rows",
            "Rows retention deleted, per table: events, deliveries (with their events), dead_letters, attempts (counted into usage first), rejected_inputs",
            retention_deleted.clone(),
        );
        let oldest_row_age = Family::default();
        registry.register(
            "oldest_row_age_seconds",
            "Age of the oldest row per table retention covers (events and rejected_inputs by when received, dead_letters by when they died), as of the last retention run; 0 when the table is empty",
            oldest_row_age.clone(),
        );
        Self {
            registry,
            cron_lateness,
            retention_deleted,
            oldest_row_age,
            oldest_rows: Mutex::new(Vec::new()),
            events_received,
            requests_rejected,
            inputs_rejected,
            attempts,
            claims,
            attempt_duration,
            queue_depth,
            dead_letters,
            oldest_pending,
            held,
        }
    }

    pub fn event_received(&self, source: &str) {
        self.events_received
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    pub fn request_rejected(&self, source: &str, status: u16) {
        self.requests_rejected
            .get_or_create(&RejectLabels {
                source: source.to_owned(),
                status,
            })
            .inc();
    }

    pub fn input_rejected(&self, source: &str) {
        self.inputs_rejected
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
    }

    /// The series of one trigger's deliveries, created at zero. The dispatcher holds
    /// them, so that a delivery updates its series without building labels.
    pub fn trigger(&self, trigger: &str) -> TriggerMetrics {
        let outcome = |outcome: AttemptOutcome| {
            self.attempts
                .get_or_create(&OutcomeLabels {
                    trigger: trigger.to_owned(),
                    outcome: outcome.as_str().to_owned(),
                })
                .clone()
        };
        let claimed = |via: ClaimedVia| {
            self.claims
                .get_or_create(&ClaimLabels {
                    trigger: trigger.to_owned(),
                    via: via.as_str().to_owned(),
                })
                .clone()
        };
        TriggerMetrics {
            succeeded: outcome(AttemptOutcome::Succeeded),
            retried: outcome(AttemptOutcome::Retry),
            dead: outcome(AttemptOutcome::Dead),
            duration: self
                .attempt_duration
                .get_or_create(&TriggerLabels {
                    trigger: trigger.to_owned(),
                })
                .clone(),
            claimed_on_append: claimed(ClaimedVia::Append),
            claimed_from_queue: claimed(ClaimedVia::Queue),
        }
    }

    pub fn cron_fired(&self, source: &str, lateness_seconds: f64) {
        self.cron_lateness
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .observe(lateness_seconds);
    }

    /// Counts what a retention run deleted.
    pub fn retention_deleted(&self, deleted: &RetentionDeleted) {
        for (table, count) in deleted.by_table() {
            self.retention_deleted
                .get_or_create(&TableLabels { table })
                .inc_by(count);
        }
    }

    /// Keeps the oldest row of each table, whose age `render` reports.
    pub fn oldest_rows(&self, due: &[RetentionDue]) {
        *self.oldest_rows.lock().expect("oldest_rows lock") = due.to_vec();
    }

    /// Renders the text exposition, after taking in the store's queue figures and
    /// what the dispatcher holds.
    pub fn render(&self, stats: Option<&QueueStats>, occupancy: &[Occupancy]) -> String {
        let now = Utc::now();
        for table in self.oldest_rows.lock().expect("oldest_rows lock").iter() {
            let age = table.oldest.map_or(0.0, |oldest| {
                (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            self.oldest_row_age
                .get_or_create(&TableLabels {
                    table: table.table.name(),
                })
                .set(age);
        }
        self.held.clear();
        for trigger in occupancy {
            for (state, count) in [("running", trigger.running), ("waiting", trigger.waiting)] {
                self.held
                    .get_or_create(&HeldLabels {
                        trigger: trigger.trigger.clone(),
                        state,
                    })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        if let Some(stats) = stats {
            self.queue_depth.clear();
            for (trigger, depth) in &stats.depth {
                self.queue_depth
                    .get_or_create(&TriggerLabels {
                        trigger: trigger.clone(),
                    })
                    .set(i64::try_from(*depth).unwrap_or(i64::MAX));
            }
            self.dead_letters.clear();
            for (trigger, dead) in &stats.dead {
                self.dead_letters
                    .get_or_create(&TriggerLabels {
                        trigger: trigger.clone(),
                    })
                    .set(i64::try_from(*dead).unwrap_or(i64::MAX));
            }
            self.oldest_pending.set(stats.oldest_pending_secs);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_metric_names() {
        let metrics = Metrics::new();
        metrics.event_received("github");
        let audit = metrics.trigger("audit");
        audit.attempt_finished(AttemptOutcome::Succeeded, 0.02);
        audit.claimed(ClaimedVia::Queue, 3);
        metrics.cron_fired("nightly", 0.004);
        metrics.input_rejected("uploads");
        let stats = QueueStats {
            depth: vec![("audit".into(), 3)],
            oldest_pending_secs: 1.5,
            dead: vec![("audit".into(), 2)],
        };
        let occupancy = [Occupancy {
            trigger: "audit".into(),
            running: 4,
            waiting: 7,
        }];
        metrics.retention_deleted(&RetentionDeleted {
            events: 5,
            attempts: 9,
            ..RetentionDeleted::default()
        });
        metrics.oldest_rows(&[RetentionDue {
            table: switchyard_core::config::RetainedTable::Events,
            due: 0,
            oldest_due: None,
            oldest: Some(Utc::now() - chrono::Duration::hours(2)),
        }]);
        let text = metrics.render(Some(&stats), &occupancy);
        for needle in [
            "switchyard_events_received_total{source=\"github\"} 1",
            "switchyard_deliveries_total{trigger=\"audit\",outcome=\"succeeded\"} 1",
            "switchyard_deliveries_total{trigger=\"audit\",outcome=\"dead\"} 0",
            "switchyard_deliveries_claimed_total{trigger=\"audit\",via=\"queue\"} 3",
            "switchyard_deliveries_claimed_total{trigger=\"audit\",via=\"append\"} 0",
            "switchyard_attempt_duration_seconds_bucket",
            "switchyard_queue_depth{trigger=\"audit\"} 3",
            "switchyard_dead_letters{trigger=\"audit\"} 2",
            "switchyard_oldest_pending_age_seconds 1.5",
            "switchyard_deliveries_held{trigger=\"audit\",state=\"running\"} 4",
            "switchyard_deliveries_held{trigger=\"audit\",state=\"waiting\"} 7",
            "switchyard_cron_lateness_seconds_bucket{le=\"0.005\",source=\"nightly\"} 1",
            "switchyard_inputs_rejected_total{source=\"uploads\"} 1",
            "switchyard_retention_deleted_rows_total{table=\"events\"} 5",
            "switchyard_retention_deleted_rows_total{table=\"attempts\"} 9",
            "switchyard_retention_deleted_rows_total{table=\"rejected_inputs\"} 0",
            "switchyard_oldest_row_age_seconds{table=\"events\"} 7200",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
