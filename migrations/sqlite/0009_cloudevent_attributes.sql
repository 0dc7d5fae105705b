-- The CloudEvents attributes an event keeps beside Switchyard's own id: the
-- producer's `id` (NULL when it is the text of `id`, as for events that did not
-- arrive as CloudEvents), `dataschema`, and the extension attributes other than
-- `partitionkey` and `traceparent` as one JSON object in text (NULL when there are
-- none).
alter table events add column ce_id text;
alter table events add column dataschema text;
alter table events add column extensions text;
