//! The statements the SQLite store runs itself (the reads both backends share are
//! in `read`). Timestamps are bound as text in the fixed form `values::timestamp`
//! writes, so comparing them as text compares the times; lists of triggers or ids
//! arrive as one JSON array and are read with `json_each`.

use crate::read::event_columns;

/// Takes the write lock at once, so the transaction never has to upgrade a read lock
/// (which fails with `SQLITE_BUSY` instead of waiting).
pub(super) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// `?1` now. Rewrites the one row of `readiness`.
pub(super) const PROBE_WRITE: &str = "
    INSERT INTO readiness (id, checked_at) VALUES (1, ?1)
    ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at";

/// True when delivery `d` is not held back by its ordering key: no other delivery of
/// the same trigger and key is running (pending under a lease), and no earlier one is
/// pending.
macro_rules! ordering_clear {
    () => {
        "(d.ordering_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM deliveries o
            WHERE o.trigger = d.trigger AND o.ordering_key = d.ordering_key AND o.id <> d.id
              AND o.status = 'pending' AND (o.lease_token IS NOT NULL OR o.id < d.id)))"
    };
}

/// The head of a multi-row insert of events: `VALUES` rows of these sixteen columns
/// follow, then [`INSERT_EVENTS_TAIL`]. A row whose id or `(source_name,
/// dedupe_key)` exists, also from an earlier row of the statement, is skipped.
pub(super) const INSERT_EVENTS_HEAD: &str = "
    INSERT INTO events (id, source_name, source, type, subject, time, datacontenttype, data,
                        data_base64, partitionkey, traceparent, dedupe_key, received_at, ce_id,
                        dataschema, extensions) ";

/// Returns the `id`, `source_name` and `dedupe_key` of each row inserted, which tell
/// which row of the statement it was.
pub(super) const INSERT_EVENTS_TAIL: &str =
    " ON CONFLICT DO NOTHING RETURNING id, source_name, dedupe_key";

/// The head of a multi-row insert of new deliveries: `VALUES` rows of these columns
/// follow, then [`INSERT_DELIVERIES_TAIL`]. Rows are inserted in order, so ids follow it.
pub(super) const INSERT_DELIVERIES_HEAD: &str = "
    INSERT INTO deliveries (event_id, trigger, ordering_key, run_at, created_at, updated_at,
                            attempts, lease_token, lease_expires_at, claimed_at) ";

/// Returns each new row's `id`, `event_id` and `trigger`, in no particular order.
pub(super) const INSERT_DELIVERIES_TAIL: &str = " RETURNING id, event_id, trigger";

pub(super) const FIND_ORIGINAL: &str =
    "SELECT id FROM events WHERE source_name = ?1 AND dedupe_key = ?2";

pub(super) const EVENT_EXISTS: &str = "SELECT 1 FROM events WHERE id = ?1";

/// `?5` is now. Creates a pending delivery and returns its id.
pub(super) const INSERT_DELIVERY: &str = "
    INSERT INTO deliveries (event_id, trigger, ordering_key, replay_of, run_at, created_at,
                            updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5)
    RETURNING id";

/// `?1` token, `?2` lease end, `?3` now, `?4` triggers (JSON), `?5` limit.
///
/// One writing statement, so SQLite runs it atomically under the write lock; the
/// uncorrelated `IN (SELECT ...)` is evaluated once, before any row changes. The rows
/// come back in no particular order. It sets only columns that no index covers, so no
/// index changes.
pub(super) const CLAIM: &str = concat!(
    "
    UPDATE deliveries
    SET lease_token = ?1, lease_expires_at = ?2, claimed_at = ?3, attempts = attempts + 1
    WHERE id IN (
        SELECT d.id FROM deliveries d
        WHERE d.status = 'pending' AND d.lease_token IS NULL AND d.run_at <= ?3
          AND d.trigger IN (SELECT value FROM json_each(?4)) AND ",
    ordering_clear!(),
    "
        ORDER BY d.run_at, d.id
        LIMIT ?5)
    RETURNING id, event_id, trigger, attempts, created_at, claimed_at, run_at"
);

/// `?1` event ids (JSON).
pub(super) const EVENTS_BY_ID: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events e WHERE e.id IN (SELECT value FROM json_each(?1))"
);

/// `?1` lease end, `?2` delivery, `?3` token. Fenced by the token alone: a delivery
/// has one exactly while it runs.
pub(super) const HEARTBEAT: &str = "
    UPDATE deliveries SET lease_expires_at = ?1 WHERE id = ?2 AND lease_token = ?3";

/// `?1` the results as a JSON array of objects (`id`, `token`, `status`, `run_at`,
/// `started_at`, `duration_ms`, `outcome`, `error`, `output`). Returns the positions in the array
/// of the results whose lease is still held. Runs first in the write transaction that
/// [`RECORD_ATTEMPTS`] and [`FINISH`] complete, so the answer holds for both.
pub(super) const HELD_LEASES: &str = "
    SELECT r.key FROM json_each(?1) r JOIN deliveries d ON d.id = r.value ->> 'id'
    WHERE d.lease_token = r.value ->> 'token'";

/// `?1` the results as for [`HELD_LEASES`]. Records the attempts after which a
/// delivery whose lease is still held runs again (retries), numbered as the fenced row
/// says (the number its claim handed out). An attempt that ends its delivery is
/// written on the delivery's row by [`FINISH`]. Runs before [`FINISH`], in the same
/// transaction.
pub(super) const RECORD_ATTEMPTS: &str = "
    INSERT INTO earlier_attempts (delivery_id, attempt, started_at, duration_ms, outcome, error,
                                  output)
    SELECT d.id, d.attempts, r.value ->> 'started_at', r.value ->> 'duration_ms',
           r.value ->> 'outcome', r.value ->> 'error', r.value ->> 'output'
    FROM json_each(?1) r JOIN deliveries d ON d.id = r.value ->> 'id'
    WHERE d.lease_token = r.value ->> 'token' AND r.value ->> 'status' = 'pending'
    ON CONFLICT DO NOTHING";

/// `?1` the results as for [`HELD_LEASES`], `?2` now. Moves the deliveries whose lease
/// is still held (`run_at` null keeps the old one), and writes the attempt that ends a
/// delivery on its row.
pub(super) const FINISH: &str = "
    UPDATE deliveries
    SET status = r.value ->> 'status', run_at = coalesce(r.value ->> 'run_at', deliveries.run_at),
        last_error = r.value ->> 'error', lease_token = NULL, lease_expires_at = NULL,
        updated_at = ?2,
        final_started_at = iif(r.value ->> 'status' <> 'pending', r.value ->> 'started_at', NULL),
        final_duration_ms = iif(r.value ->> 'status' <> 'pending', r.value ->> 'duration_ms', NULL),
        final_outcome = iif(r.value ->> 'status' <> 'pending', r.value ->> 'outcome', NULL),
        final_output = iif(r.value ->> 'status' <> 'pending', r.value ->> 'output', NULL)
    FROM json_each(?1) r
    WHERE deliveries.id = r.value ->> 'id' AND deliveries.lease_token = r.value ->> 'token'";

/// An abandoned attempt: the delivery runs again.
pub(super) const INSERT_ATTEMPT: &str = "
    INSERT INTO earlier_attempts (delivery_id, attempt, started_at, duration_ms, outcome, error)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT DO NOTHING";

/// `?1` now, `?2` delivery, `?3` token.
pub(super) const RELEASE: &str = "
    UPDATE deliveries
    SET attempts = attempts - 1, lease_token = NULL, lease_expires_at = NULL, updated_at = ?1
    WHERE id = ?2 AND lease_token = ?3";

/// `?1` now. No index covers the lease, so this reads the due part of
/// `deliveries_runnable`: a claimed delivery was due when it was claimed.
pub(super) const EXPIRED_LEASES: &str = "
    SELECT id, attempts, claimed_at FROM deliveries
    WHERE status = 'pending' AND run_at <= ?1 AND lease_expires_at < ?1";

/// `?1` now, `?2` delivery.
pub(super) const REQUEUE_EXPIRED: &str = "
    UPDATE deliveries
    SET run_at = ?1, lease_token = NULL, lease_expires_at = NULL, updated_at = ?1
    WHERE id = ?2";

/// `?1` triggers (JSON).
pub(super) const NEXT_RUN_AT: &str = concat!(
    "SELECT min(d.run_at) FROM deliveries d
     WHERE d.status = 'pending' AND d.lease_token IS NULL
       AND d.trigger IN (SELECT value FROM json_each(?1)) AND ",
    ordering_clear!()
);

/// `?1` now, `?2` delivery. Returns what the replay needs, if the row was dead.
pub(super) const MARK_REPLAYED: &str = "
    UPDATE deliveries SET status = 'replayed', updated_at = ?1
    WHERE id = ?2 AND status = 'dead'
    RETURNING event_id, trigger, ordering_key";

/// `?1` now.
pub(super) const OLDEST_RUNNABLE: &str = "
    SELECT min(run_at) FROM deliveries
    WHERE status = 'pending' AND lease_token IS NULL AND run_at <= ?1";

/// `?1` source, `?2` position, `?3` now: moves the position forward, never back.
pub(super) const ADVANCE_SCHEDULE: &str = "
    INSERT INTO schedules (source_name, position, updated_at) VALUES (?1, ?2, ?3)
    ON CONFLICT (source_name) DO UPDATE
    SET position = max(schedules.position, excluded.position), updated_at = excluded.updated_at";

/// `?1` source, `?2` scheduled time, `?3` now. A time another process fired is not
/// recorded as skipped.
pub(super) const INSERT_SKIPPED: &str = "
    INSERT INTO skipped_fires (source_name, scheduled_time, recorded_at)
    SELECT ?1, ?2, ?3
    WHERE NOT EXISTS (
        SELECT 1 FROM events e WHERE e.source_name = ?1 AND e.type = 'cron.tick' AND e.time = ?2)
    ON CONFLICT DO NOTHING";

/// `?1` source, `?2` position (JSON), `?3` now.
pub(super) const SAVE_POSITION: &str = "
    INSERT INTO source_positions (source_name, position, updated_at) VALUES (?1, ?2, ?3)
    ON CONFLICT (source_name) DO UPDATE
    SET position = excluded.position, updated_at = excluded.updated_at";

/// `?1` source, `?2` input id, `?3` reason, `?4` body, `?5` now. An input already
/// recorded is not recorded again.
pub(super) const REJECT_INPUT: &str = "
    INSERT INTO rejected_inputs (source_name, input_id, reason, body, received_at)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT DO NOTHING";

/// Whether sqlx's bookkeeping table exists, for the schema check.
pub(super) const MIGRATIONS_TABLE_EXISTS: &str =
    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";

/// The migrations sqlx recorded: version, whether it finished, checksum.
pub(super) const RECORDED_MIGRATIONS: &str =
    "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version";
