-- Switchyard's event log and queue. Everything lives in the `switchyard` schema.
create schema if not exists switchyard;

-- Append-only log of every accepted event, as a CloudEvent plus bookkeeping.
create table switchyard.events (
    id              uuid primary key,                  -- UUIDv7: sorts by time
    source_name     text not null,                     -- the configured source
    source          text not null,                     -- CloudEvents `source`
    type            text not null,
    subject         text,
    time            timestamptz not null,
    datacontenttype text,
    data            jsonb,
    data_base64     text,
    partitionkey    text,
    traceparent     text,
    dedupe_key      text,
    received_at     timestamptz not null default now()
);
create unique index events_dedupe on switchyard.events (source_name, dedupe_key) where dedupe_key is not null;
create index events_received on switchyard.events (received_at);

-- One row per dispatch of an event to a trigger. The hot queue.
create table switchyard.deliveries (
    id               bigint generated always as identity primary key,
    event_id         uuid not null references switchyard.events (id) on delete cascade,
    trigger          text not null,
    status           text not null default 'pending'
                     check (status in ('pending', 'running', 'succeeded', 'dead', 'replayed')),
    attempts         integer not null default 0,       -- attempts started so far
    run_at           timestamptz not null default now(),
    ordering_key     text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    claimed_at       timestamptz,
    replay_of        bigint,
    last_error       text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);
-- What `claim` scans: only runnable rows are in it.
create index deliveries_runnable on switchyard.deliveries (run_at) where status = 'pending';
create index deliveries_leases on switchyard.deliveries (lease_expires_at) where status = 'running';
create index deliveries_event on switchyard.deliveries (event_id);
create index deliveries_ordering on switchyard.deliveries (trigger, ordering_key, id)
    where ordering_key is not null and status in ('pending', 'running');
create index deliveries_dead on switchyard.deliveries (updated_at) where status = 'dead';

-- Append-only: one row per finished or abandoned attempt.
create table switchyard.attempts (
    delivery_id bigint not null references switchyard.deliveries (id) on delete cascade,
    attempt     integer not null,
    started_at  timestamptz not null,
    duration_ms bigint not null,
    outcome     text not null check (outcome in ('succeeded', 'retry', 'dead', 'abandoned')),
    error       text,
    primary key (delivery_id, attempt)
);
