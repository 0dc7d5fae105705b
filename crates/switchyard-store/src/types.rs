//! Rows in and out of the store.

use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_core::Event;
use uuid::Uuid;

/// An event to append, with the deliveries routing chose for it.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The event, with its bookkeeping fields (`source_name`, `dedupe_key`,
    /// `received_at`) set; they are stored as given.
    pub event: Event,
    /// Created only if the event is new, not for a duplicate.
    pub deliveries: Vec<NewDelivery>,
}

/// One delivery to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// The trigger's configured name.
    pub trigger: String,
    /// The per-key ordering key, for triggers with `ordering`.
    pub ordering_key: Option<String>,
    /// Create it already claimed by the appender, so that it needs no separate claim.
    /// Honoured only by [`Store::append_claiming`](crate::Store::append_claiming) and
    /// never for a delivery with an ordering key; otherwise it is created pending.
    pub claim: bool,
}

/// The result of appending one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The event was stored under this id, with its deliveries.
    Created(Uuid),
    /// An event with the same dedupe key exists; this is its id.
    Duplicate(Uuid),
}

impl Appended {
    /// The id of the stored event: the new one, or the original of a duplicate.
    pub fn id(self) -> Uuid {
        match self {
            Self::Created(id) | Self::Duplicate(id) => id,
        }
    }
}

/// A held lease: the delivery and the token that fences it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    pub delivery_id: i64,
    /// Changes on every claim; results and heartbeats must present it.
    pub token: Uuid,
}

/// A delivery claimed for execution.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub lease: Lease,
    /// The trigger this delivery is for.
    pub trigger: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// When the delivery was created; `max_event_age` counts from here.
    pub created_at: DateTime<Utc>,
    /// When this claim was made (the database's clock).
    pub claimed_at: DateTime<Utc>,
    /// The event, with every field as appended.
    pub event: Event,
}

/// The outcome of one attempt, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed for good: fatal, or the policy is exhausted.
    Dead,
    /// The worker lost its lease (crashed or paused) before recording a result.
    Abandoned,
}

impl AttemptOutcome {
    /// The stored form, in `attempts.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retry => "retry",
            Self::Dead => "dead",
            Self::Abandoned => "abandoned",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "succeeded" => Self::Succeeded,
            "retry" => Self::Retry,
            "dead" => Self::Dead,
            "abandoned" => Self::Abandoned,
            _ => return None,
        })
    }
}

/// A finished attempt to record.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The lease the result is fenced by.
    pub lease: Lease,
    /// The claim's attempt number, for logs; the store records the number the fenced
    /// delivery holds, which is the same for a live lease.
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// `Succeeded` and `Dead` end the delivery; `Retry` (and `Abandoned`) make it
    /// pending again.
    pub outcome: AttemptOutcome,
    /// For `Retry`: when the next attempt may run; `None` means now.
    pub retry_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What the handler said: an excerpt of its output (see `AttemptRecord::output`),
    /// stored for every outcome. The store keeps at most 16 KiB of it.
    pub output: Option<String>,
}

/// A delivery's lifecycle state, as the store reports it. `Running` is not stored: a
/// running delivery is a `pending` row that holds a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Running,
    Succeeded,
    Dead,
    /// A dead letter that was replayed into a new delivery.
    Replayed,
}

impl DeliveryStatus {
    /// The stored form, in `deliveries.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Replayed => "replayed",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "dead" => Self::Dead,
            "replayed" => Self::Replayed,
            _ => return None,
        })
    }
}

/// Filters for `switchyard events`.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Only events from this configured source (`source_name`).
    pub source: Option<String>,
    /// Only events of this CloudEvents `type`.
    pub ty: Option<String>,
    /// Only events with a delivery to this trigger.
    pub trigger: Option<String>,
    /// Only events with a delivery in this status (the same delivery as `trigger`,
    /// when both are set).
    pub status: Option<DeliveryStatus>,
    /// Only events received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events appended after this one (for `--follow`), oldest first when set.
    pub after: Option<Uuid>,
    /// At most this many; `0` means no limit.
    pub limit: u32,
}

/// A line of `switchyard events`.
#[derive(Clone, Debug, Serialize)]
pub struct EventSummary {
    pub id: Uuid,
    pub source_name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub subject: Option<String>,
    pub received_at: DateTime<Utc>,
    /// All deliveries of the event, whatever their status.
    pub deliveries: u32,
    pub succeeded: u32,
    /// Not finished yet: pending or running.
    pub pending: u32,
    pub dead: u32,
}

/// `switchyard event ID`.
#[derive(Clone, Debug, Serialize)]
pub struct EventDetail {
    pub event: Event,
    pub source_name: String,
    pub received_at: DateTime<Utc>,
    pub dedupe_key: Option<String>,
    pub deliveries: Vec<DeliveryDetail>,
}

/// A delivery with its attempts.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryDetail {
    pub id: i64,
    pub event_id: Uuid,
    pub trigger: String,
    pub status: DeliveryStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// When it is (or was) runnable from.
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The last status change.
    pub updated_at: DateTime<Utc>,
    pub ordering_key: Option<String>,
    /// The delivery this one replays, if any.
    pub replay_of: Option<i64>,
    /// The error of the last finished attempt.
    pub last_error: Option<String>,
    /// Every recorded attempt, by attempt number.
    pub attempt_log: Vec<AttemptRecord>,
}

/// One row of `attempts`.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    /// What the handler said in this attempt, with configured secrets redacted: a
    /// command's stdout and stderr tails, a webhook response's status and body, or
    /// what a Rust handler set with `Context::set_output`. `None` when it said nothing.
    pub output: Option<String>,
}

/// Filters for dead letters.
#[derive(Clone, Debug, Default)]
pub struct DeadQuery {
    /// Only dead letters of this trigger.
    pub trigger: Option<String>,
    /// Only those that died at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only those that died before this time.
    pub before: Option<DateTime<Utc>>,
    /// At most this many, newest first; `0` means no limit.
    pub limit: u32,
}

/// A line of `switchyard dlq list`.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    pub delivery_id: i64,
    pub event_id: Uuid,
    pub trigger: String,
    pub source_name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub died_at: DateTime<Utc>,
}

/// Queue figures for `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueStats {
    /// Pending and running deliveries, per trigger.
    pub depth: Vec<(String, u64)>,
    /// How long, in seconds, the longest-waiting runnable pending delivery has been
    /// runnable (since its `run_at`); 0 if none.
    pub oldest_pending_secs: f64,
    /// Dead letters, per trigger.
    pub dead: Vec<(String, u64)>,
}

/// An input a source could not turn into events, kept instead of being retried
/// forever (a line of `switchyard rejected`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectedInput {
    pub id: i64,
    /// The configured source that received it.
    pub source_name: String,
    /// The input's id upstream, such as the SQS `MessageId`. A source rejecting the same
    /// input again (after a redelivery) records it once.
    pub input_id: String,
    /// Why it was rejected, in plain language.
    pub reason: String,
    /// The input as received.
    pub body: String,
    pub received_at: DateTime<Utc>,
}
