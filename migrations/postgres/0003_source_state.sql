-- Source state: where each polling source is, and the inputs sources had to reject.

-- A source's checkpoint (the last bucket listing of an `s3` source in polling mode), as
-- JSON. It commits in the same transaction as the events it accounts for.
create table switchyard.source_positions (
    source_name text primary key,
    position    jsonb not null,
    updated_at  timestamptz not null default now()
);

-- Inputs a source received but could not turn into events (an SQS message that is not
-- an S3 notification, say). They are kept here, acknowledged upstream, and never retried.
create table switchyard.rejected_inputs (
    id          bigint generated always as identity primary key,
    source_name text not null,
    input_id    text not null,      -- the input's id upstream, such as the SQS MessageId
    reason      text not null,
    body        text not null,      -- the input as received
    received_at timestamptz not null default now(),
    unique (source_name, input_id)
);
create index rejected_inputs_received on switchyard.rejected_inputs (received_at);
