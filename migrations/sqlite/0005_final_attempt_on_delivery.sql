-- The attempt that ends a delivery (it succeeded, or made the delivery a dead letter)
-- is recorded on the delivery's own row, in the update that ends it. Only attempts
-- after which the delivery runs again (retries and abandoned attempts) get a row of
-- their own, in `earlier_attempts`. Most deliveries succeed at the first attempt, so a
-- finish writes one row instead of two. The `attempts` view lists every attempt, as
-- the table did.
alter table attempts rename to earlier_attempts;

alter table deliveries add column final_started_at text;
alter table deliveries add column final_duration_ms integer;
alter table deliveries add column final_outcome text check (final_outcome in ('succeeded', 'dead'));

update deliveries
set (final_started_at, final_duration_ms, final_outcome) = (
    select a.started_at, a.duration_ms, a.outcome from earlier_attempts a
    where a.delivery_id = deliveries.id and a.attempt = deliveries.attempts
      and a.outcome in ('succeeded', 'dead'))
where status in ('succeeded', 'dead', 'replayed');

delete from earlier_attempts
where exists (
    select 1 from deliveries d
    where d.id = earlier_attempts.delivery_id and d.final_outcome is not null
      and earlier_attempts.attempt = d.attempts);

-- Every attempt: the earlier ones, and the final one of each finished delivery, whose
-- error is the delivery's `last_error`.
create view attempts as
    select delivery_id, attempt, started_at, duration_ms, outcome, error
    from earlier_attempts
    union all
    select id, attempts, final_started_at, final_duration_ms, final_outcome, last_error
    from deliveries
    where final_outcome is not null;
