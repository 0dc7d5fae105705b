-- Source state: where each polling source is, and the inputs sources had to reject.

-- A source's checkpoint (the last bucket listing of an `s3` source in polling mode), as
-- JSON text. It commits in the same transaction as the events it accounts for.
create table source_positions (
    source_name text primary key,
    position    text not null,
    updated_at  text not null
);

-- Inputs a source received but could not turn into events (an SQS message that is not
-- an S3 notification, say). They are kept here, acknowledged upstream, and never retried.
create table rejected_inputs (
    id          integer primary key autoincrement,
    source_name text not null,
    input_id    text not null,      -- the input's id upstream, such as the SQS MessageId
    reason      text not null,
    body        text not null,      -- the input as received
    received_at text not null,
    unique (source_name, input_id)
);
create index rejected_inputs_received on rejected_inputs (received_at);
