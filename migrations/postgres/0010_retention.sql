-- Retention deletes events, dead letters and rejected inputs once their period has
-- passed, oldest first, per source where a source overrides the period.
create index events_source_received on switchyard.events (source_name, received_at);
create index rejected_inputs_source_received on switchyard.rejected_inputs (source_name, received_at);

-- Attempts, counted per UTC day (of the attempt's start) and trigger. Retention adds
-- the attempts of the deliveries it deletes here, in the transaction that deletes
-- them, so the counts outlive the rows. Rows of attempts still stored are not in it.
create table switchyard.usage (
    day        date not null,
    trigger    text not null,
    attempts   bigint not null default 0,   -- every attempt
    succeeded  bigint not null default 0,   -- attempts that succeeded
    retried    bigint not null default 0,   -- attempts that failed and were retried
    dead       bigint not null default 0,   -- attempts that made their delivery dead
    abandoned  bigint not null default 0,   -- attempts whose lease expired
    handler_ms bigint not null default 0,   -- time the attempts ran, in milliseconds
    primary key (day, trigger)
);
