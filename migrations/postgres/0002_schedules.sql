-- Cron state: where each schedule is, and the fires it skipped.
create table switchyard.schedules (
    source_name text primary key,
    position    timestamptz not null,   -- the latest scheduled time fired or skipped
    updated_at  timestamptz not null default now()
);

create table switchyard.skipped_fires (
    source_name    text not null,
    scheduled_time timestamptz not null,
    recorded_at    timestamptz not null default now(),
    primary key (source_name, scheduled_time)
);
