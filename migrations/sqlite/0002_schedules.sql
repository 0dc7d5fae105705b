-- Cron state: where each schedule is, and the fires it skipped.
create table schedules (
    source_name text primary key,
    position    text not null,
    updated_at  text not null
);

create table skipped_fires (
    source_name    text not null,
    scheduled_time text not null,
    recorded_at    text not null,
    primary key (source_name, scheduled_time)
);
