-- Switchyard's event log and queue for the embedded SQLite store. Same tables and
-- columns as Postgres; timestamps are RFC 3339 text in UTC, ids are UUID text, and
-- `data` is JSON text.
create table events (
    id              text primary key,
    source_name     text not null,
    source          text not null,
    type            text not null,
    subject         text,
    time            text not null,
    datacontenttype text,
    data            text,
    data_base64     text,
    partitionkey    text,
    traceparent     text,
    dedupe_key      text,
    received_at     text not null
);
create unique index events_dedupe on events (source_name, dedupe_key) where dedupe_key is not null;
create index events_received on events (received_at);

create table deliveries (
    id               integer primary key autoincrement,
    event_id         text not null references events (id) on delete cascade,
    trigger          text not null,
    status           text not null default 'pending'
                     check (status in ('pending', 'running', 'succeeded', 'dead', 'replayed')),
    attempts         integer not null default 0,
    run_at           text not null,
    ordering_key     text,
    lease_token      text,
    lease_expires_at text,
    claimed_at       text,
    replay_of        integer,
    last_error       text,
    created_at       text not null,
    updated_at       text not null
);
create index deliveries_runnable on deliveries (run_at) where status = 'pending';
create index deliveries_leases on deliveries (lease_expires_at) where status = 'running';
create index deliveries_event on deliveries (event_id);
create index deliveries_ordering on deliveries (trigger, ordering_key, id)
    where ordering_key is not null and status in ('pending', 'running');
create index deliveries_dead on deliveries (updated_at) where status = 'dead';

create table attempts (
    delivery_id integer not null references deliveries (id) on delete cascade,
    attempt     integer not null,
    started_at  text not null,
    duration_ms integer not null,
    outcome     text not null check (outcome in ('succeeded', 'retry', 'dead', 'abandoned')),
    error       text,
    primary key (delivery_id, attempt)
);
