//! The statements the Postgres store runs itself (the reads both backends share are
//! in `read`). Each names the `switchyard` schema, so the connection's `search_path`
//! does not matter; batches arrive as arrays and are unnested server-side.

use crate::read::event_columns;

/// The channel `NOTIFY` uses to say runnable work may have appeared.
pub(super) const WORK_CHANNEL: &str = "switchyard_work";

/// Sent inside a transaction, so listeners hear it only if the work commits.
pub(super) const NOTIFY_WORK: &str = "SELECT pg_notify('switchyard_work', '')";

/// Serializes the creation of the `switchyard` schema across processes. The key is an
/// arbitrary constant ("SWYDSCHM").
pub(super) const LOCK_SCHEMA: &str = "SELECT pg_advisory_xact_lock(6005366778111412301)";

/// Taken by a reclaim, so that one process at a time reads the queue for expired
/// leases. Returns false if another holds it. The key is an arbitrary constant
/// ("SWYDRCLM").
pub(super) const TRY_LOCK_RECLAIM: &str = "SELECT pg_try_advisory_xact_lock(6005366778094636109)";

pub(super) const CREATE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS switchyard";

/// For the migration connection only, so sqlx's `_sqlx_migrations` lands in our schema.
pub(super) const USE_SCHEMA: &str = "SET search_path TO switchyard";

/// For the migration connection only: `CREATE ... IF NOT EXISTS` of an object that
/// exists raises a notice, which sqlx logs, at every start.
pub(super) const QUIET_NOTICES: &str = "SET client_min_messages TO warning";

/// Whether sqlx's bookkeeping table exists, for the schema check.
pub(super) const MIGRATIONS_TABLE_EXISTS: &str =
    "SELECT to_regclass('switchyard._sqlx_migrations') IS NOT NULL";

/// The migrations sqlx recorded: version, whether it finished, checksum.
pub(super) const RECORDED_MIGRATIONS: &str =
    "SELECT version, success, checksum FROM switchyard._sqlx_migrations ORDER BY version";

/// Rewrites the one row of `readiness`.
pub(super) const PROBE_WRITE: &str = "
    INSERT INTO switchyard.readiness (id, checked_at) VALUES (1, now())
    ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at";

/// True when delivery `d` is not held back by its ordering key: no other delivery of
/// the same trigger and key is running (pending under a lease), and no earlier one is
/// pending. Checking "running" regardless of id keeps a key to one delivery at a time
/// even when two appends commit out of id order.
macro_rules! ordering_clear {
    () => {
        "(d.ordering_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM switchyard.deliveries o
            WHERE o.trigger = d.trigger AND o.ordering_key = d.ordering_key AND o.id <> d.id
              AND o.status = 'pending' AND (o.lease_token IS NOT NULL OR o.id < d.id)))"
    };
}

/// Appends a batch in one statement, so that outside a transaction it is one round
/// trip and one commit. `$1` to `$16` are the events' columns; a row whose id or
/// dedupe key exists is skipped. `$17` to `$20` are the deliveries, inserted in array
/// order (so ids, and hence per-key order, follow the batch) for the events that were
/// inserted; those flagged in `$20` are created claimed (`pending` with a lease), under
/// lease token `$21` for `$22` milliseconds. If a delivery was left unclaimed, other
/// processes are signalled.
///
/// Returns one row per inserted event (`event_id` only), one per claimed delivery
/// (every column), and one row of NULLs when the signal went out.
pub(super) const APPEND: &str = "
    WITH e AS (
        INSERT INTO switchyard.events (id, source_name, source, type, subject, time,
                                       datacontenttype, data, data_base64, partitionkey,
                                       traceparent, dedupe_key, received_at, ce_id,
                                       dataschema, extensions)
        SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::timestamptz[], $7::text[], $8::jsonb[], $9::text[],
                             $10::text[], $11::text[], $12::text[], $13::timestamptz[],
                             $14::text[], $15::text[], $16::jsonb[])
        ON CONFLICT DO NOTHING
        RETURNING id
    ), d AS (
        INSERT INTO switchyard.deliveries (event_id, trigger, ordering_key, attempts,
                                           lease_token, lease_expires_at, claimed_at)
        SELECT n.event_id, n.trigger, n.ordering_key,
               CASE WHEN n.claim THEN 1 ELSE 0 END,
               CASE WHEN n.claim THEN $21::uuid END,
               CASE WHEN n.claim THEN now() + $22 * interval '1 millisecond' END,
               CASE WHEN n.claim THEN now() END
        FROM UNNEST($17::uuid[], $18::text[], $19::text[], $20::bool[])
             WITH ORDINALITY AS n(event_id, trigger, ordering_key, claim, position)
        WHERE n.event_id IN (SELECT id FROM e)
        ORDER BY n.position
        RETURNING id, event_id, trigger, lease_token IS NOT NULL AS claimed, created_at,
                  claimed_at
    )
    SELECT id AS event_id, NULL::bigint AS delivery_id, NULL::text AS trigger,
           NULL::timestamptz AS created_at, NULL::timestamptz AS claimed_at
    FROM e
    UNION ALL
    SELECT event_id, id, trigger, created_at, claimed_at FROM d WHERE claimed
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL
    FROM (SELECT pg_notify('switchyard_work', '') FROM d WHERE NOT claimed LIMIT 1)
         AS signal";

/// The ids of the events holding the given `(source_name, dedupe_key)` pairs.
pub(super) const FIND_ORIGINALS: &str = "
    SELECT k.source_name, k.dedupe_key, e.id
    FROM UNNEST($1::text[], $2::text[]) AS k(source_name, dedupe_key)
    JOIN switchyard.events e ON e.source_name = k.source_name AND e.dedupe_key = k.dedupe_key";

/// `$1` triggers, `$2` limit, `$3` lease token, `$4` lease in milliseconds. Returns the
/// claimed deliveries joined with their events, in `(run_at, id)` order.
///
/// The update sets only columns that no index covers (not `status`, not `updated_at`),
/// so it can be a HOT update: the claimed version goes on the row's own page (which the
/// table's `fillfactor` leaves room on) and no index gets an entry. The walk along
/// `deliveries_runnable` passes the deliveries that are already claimed.
pub(super) const CLAIM: &str = concat!(
    "
    WITH c AS (
        SELECT d.id FROM switchyard.deliveries d
        WHERE d.status = 'pending' AND d.lease_token IS NULL AND d.run_at <= now()
          AND d.trigger = ANY($1) AND ",
    ordering_clear!(),
    "
        ORDER BY d.run_at, d.id
        LIMIT $2
        FOR UPDATE OF d SKIP LOCKED
    ), u AS (
        UPDATE switchyard.deliveries d
        SET lease_token = $3, lease_expires_at = now() + $4 * interval '1 millisecond',
            claimed_at = now(), attempts = d.attempts + 1
        FROM c WHERE d.id = c.id
        RETURNING d.id, d.event_id, d.trigger, d.attempts, d.created_at, d.claimed_at, d.run_at
    )
    SELECT u.id AS delivery_id, u.trigger, u.attempts, u.created_at AS delivery_created_at,
           u.claimed_at, ",
    event_columns!(),
    "
    FROM u JOIN switchyard.events e ON e.id = u.event_id
    ORDER BY u.run_at, u.id"
);

/// Fenced by the lease token alone, like [`FINISH`]. Returns the input positions
/// (from 1) of the leases still held.
pub(super) const HEARTBEAT: &str = "
    UPDATE switchyard.deliveries d
    SET lease_expires_at = now() + $3 * interval '1 millisecond'
    FROM UNNEST($1::bigint[], $2::uuid[]) WITH ORDINALITY AS l(id, token, position)
    WHERE d.id = l.id AND d.lease_token = l.token
    RETURNING l.position";

/// Moves every delivery whose lease is still held and records those attempts, in one
/// statement, so that outside a transaction it is one round trip and one commit. An
/// attempt that ends its delivery (`succeeded`, `dead`) is written on the delivery's
/// row, in the same update; one after which the delivery runs again (a retry) gets a
/// row in `earlier_attempts`. The attempt number is the one the fenced row holds, which
/// is the one its claim handed out. If a delivery became pending again or was one of an
/// ordering key (whose next delivery may now run), other processes are signalled.
///
/// The fence is the lease token alone: a delivery has one exactly while it is running
/// (every statement that ends a run clears it). A condition on `status` would say
/// nothing more, and the planner would take its estimate from statistics gathered
/// when nothing was running (a freshly filled queue): it would then scan the whole
/// table for every batch (40 ms against 5 ms per 256 at the start of a drain) instead
/// of looking each id up in the primary key.
///
/// Returns the input positions (from 1) that were accepted, plus one row of NULLs
/// when the signal went out.
pub(super) const FINISH: &str = "
    WITH u AS (
        UPDATE switchyard.deliveries d
        SET status = r.status,
            run_at = CASE WHEN r.status = 'pending' THEN coalesce(r.run_at, now()) ELSE d.run_at END,
            last_error = r.error, lease_token = NULL, lease_expires_at = NULL, updated_at = now(),
            final_started_at = CASE WHEN r.status <> 'pending' THEN r.started_at END,
            final_duration_ms = CASE WHEN r.status <> 'pending' THEN r.duration_ms END,
            final_outcome = CASE WHEN r.status <> 'pending' THEN r.outcome END,
            final_output = CASE WHEN r.status <> 'pending' THEN r.output END
        FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[],
                    $6::timestamptz[], $7::bigint[], $8::text[], $9::text[])
             WITH ORDINALITY AS r(id, token, status, run_at, error, started_at, duration_ms,
                                  outcome, output, position)
        WHERE d.id = r.id AND d.lease_token = r.token
        RETURNING r.position, r.started_at, r.duration_ms, r.outcome, r.error, r.output, d.id,
                  d.attempts, d.status, d.ordering_key
    ), recorded AS (
        INSERT INTO switchyard.earlier_attempts (delivery_id, attempt, started_at, duration_ms,
                                                 outcome, error, output)
        SELECT id, attempts, started_at, duration_ms, outcome, error, output FROM u
        WHERE u.status = 'pending'
        ON CONFLICT DO NOTHING
    )
    SELECT position FROM u
    UNION ALL
    SELECT NULL
    FROM (SELECT pg_notify('switchyard_work', '') FROM u
          WHERE u.status = 'pending' OR u.ordering_key IS NOT NULL LIMIT 1) AS signal";

/// Fenced by the lease token alone, like [`FINISH`].
pub(super) const RELEASE: &str = "
    UPDATE switchyard.deliveries d
    SET attempts = d.attempts - 1, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM UNNEST($1::bigint[], $2::uuid[]) AS l(id, token)
    WHERE d.id = l.id AND d.lease_token = l.token";

/// `$1` is the error recorded on the abandoned attempts. Returns how many.
///
/// No index covers the lease (a claim would then have to write an entry in it), so
/// this reads the due part of `deliveries_runnable`: a claimed delivery was due when
/// it was claimed.
pub(super) const RECLAIM_EXPIRED: &str = "
    WITH expired AS (
        SELECT id FROM switchyard.deliveries
        WHERE status = 'pending' AND run_at <= now() AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE switchyard.deliveries d
        SET run_at = now(), lease_token = NULL, lease_expires_at = NULL, updated_at = now()
        FROM expired WHERE d.id = expired.id
        RETURNING d.id, d.attempts, d.claimed_at
    ), recorded AS (
        INSERT INTO switchyard.earlier_attempts (delivery_id, attempt, started_at, duration_ms,
                                                 outcome, error)
        SELECT id, attempts, coalesce(claimed_at, now()),
               coalesce((extract(epoch FROM now() - claimed_at) * 1000)::bigint, 0), 'abandoned', $1
        FROM u
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) FROM u";

pub(super) const NEXT_RUN_AT: &str = concat!(
    "SELECT min(d.run_at) FROM switchyard.deliveries d
     WHERE d.status = 'pending' AND d.lease_token IS NULL AND d.trigger = ANY($1) AND ",
    ordering_clear!()
);

/// `$1` event, `$2` triggers, `$3` ordering keys, `$4` replay_of. Returns the new ids,
/// none if the event does not exist. The event stays locked until the transaction
/// ends, so a concurrent delete of it waits and then deletes these deliveries too.
pub(super) const ADD_DELIVERIES: &str = "
    WITH event AS (SELECT id FROM switchyard.events WHERE id = $1 FOR KEY SHARE)
    INSERT INTO switchyard.deliveries (event_id, trigger, ordering_key, replay_of)
    SELECT event.id, n.trigger, n.ordering_key, $4
    FROM event,
         UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS n(trigger, ordering_key, position)
    ORDER BY n.position
    RETURNING id";

/// Returns the new delivery ids. Locks the events, as [`ADD_DELIVERIES`] does.
pub(super) const REPLAY_DEAD: &str = "
    WITH old AS (
        UPDATE switchyard.deliveries
        SET status = 'replayed', updated_at = now()
        WHERE id = ANY($1) AND status = 'dead'
        RETURNING id, event_id, trigger, ordering_key
    ), event AS (
        SELECT id FROM switchyard.events WHERE id IN (SELECT event_id FROM old)
        FOR KEY SHARE
    )
    INSERT INTO switchyard.deliveries (event_id, trigger, ordering_key, replay_of)
    SELECT old.event_id, old.trigger, old.ordering_key, old.id
    FROM old JOIN event ON event.id = old.event_id
    ORDER BY old.id
    RETURNING id";

pub(super) const OLDEST_PENDING_SECS: &str = "
    SELECT coalesce(extract(epoch FROM now() - min(run_at))::float8, 0)
    FROM switchyard.deliveries
    WHERE status = 'pending' AND lease_token IS NULL AND run_at <= now()";

/// `$1` source, `$2` position: moves the position forward, never back.
pub(super) const ADVANCE_SCHEDULE: &str = "
    INSERT INTO switchyard.schedules (source_name, position) VALUES ($1, $2)
    ON CONFLICT (source_name) DO UPDATE
    SET position = greatest(schedules.position, excluded.position), updated_at = now()";

/// `$1` source, `$2` scheduled times. A time that another process fired is not
/// recorded as skipped.
pub(super) const INSERT_SKIPPED: &str = "
    INSERT INTO switchyard.skipped_fires (source_name, scheduled_time)
    SELECT $1, t FROM unnest($2::timestamptz[]) AS t
    WHERE NOT EXISTS (
        SELECT 1 FROM switchyard.events e
        WHERE e.source_name = $1 AND e.type = 'cron.tick' AND e.time = t)
    ON CONFLICT DO NOTHING";

/// `$1` source, `$2` position.
pub(super) const SAVE_POSITION: &str = "
    INSERT INTO switchyard.source_positions (source_name, position) VALUES ($1, $2)
    ON CONFLICT (source_name) DO UPDATE
    SET position = excluded.position, updated_at = now()";

/// `$1` source, `$2` input id, `$3` reason, `$4` body. An input already recorded is not
/// recorded again.
pub(super) const REJECT_INPUT: &str = "
    INSERT INTO switchyard.rejected_inputs (source_name, input_id, reason, body)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT DO NOTHING";

pub(super) const ANALYZE_QUEUE: &str = "ANALYZE switchyard.deliveries";
