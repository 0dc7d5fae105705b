-- The CloudEvents attributes an event keeps beside Switchyard's own id: the
-- producer's `id` (NULL when it is the text of `id`, as for events that did not
-- arrive as CloudEvents), `dataschema`, and the extension attributes other than
-- `partitionkey` and `traceparent` as one JSON object (NULL when there are none).
alter table switchyard.events
    add column ce_id text,
    add column dataschema text,
    add column extensions jsonb;
