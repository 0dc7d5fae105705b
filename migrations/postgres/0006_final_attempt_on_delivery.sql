-- The attempt that ends a delivery (it succeeded, or made the delivery a dead letter)
-- is recorded on the delivery's own row, in the update that ends it. Only attempts
-- after which the delivery runs again (retries and abandoned attempts) get a row of
-- their own, in `earlier_attempts`. Most deliveries succeed at the first attempt, so a
-- finish writes one row instead of two: no attempt row, no entry in its key, and no
-- foreign-key check locking the delivery (a fifth less WAL per delivery in a drain).
-- The `attempts` view lists every attempt, as the table did.
alter table switchyard.attempts rename to earlier_attempts;
alter index switchyard.attempts_pkey rename to earlier_attempts_pkey;

alter table switchyard.deliveries
    add column final_started_at  timestamptz,
    add column final_duration_ms bigint,
    add column final_outcome     text check (final_outcome in ('succeeded', 'dead'));

update switchyard.deliveries d
set final_started_at = a.started_at, final_duration_ms = a.duration_ms,
    final_outcome = a.outcome
from switchyard.earlier_attempts a
where a.delivery_id = d.id and a.attempt = d.attempts
  and d.status in ('succeeded', 'dead', 'replayed') and a.outcome in ('succeeded', 'dead');

delete from switchyard.earlier_attempts a
using switchyard.deliveries d
where a.delivery_id = d.id and a.attempt = d.attempts and d.final_outcome is not null;

-- Every attempt: the earlier ones, and the final one of each finished delivery, whose
-- error is the delivery's `last_error`.
create view switchyard.attempts as
    select delivery_id, attempt, started_at, duration_ms, outcome, error
    from switchyard.earlier_attempts
    union all
    select id, attempts, final_started_at, final_duration_ms, final_outcome, last_error
    from switchyard.deliveries
    where final_outcome is not null;
