-- What the handler said in each attempt: a bounded excerpt of its output (a command's
-- stdout and stderr, a webhook response's status and body, or what a Rust handler
-- set), with configured secrets redacted. A retried or abandoned attempt keeps it in
-- its `earlier_attempts` row; the attempt that ends a delivery keeps it on the
-- delivery's row, beside its other `final_` columns.
alter table earlier_attempts add column output text;
alter table deliveries add column final_output text;

-- Every attempt, now with its output.
drop view attempts;
create view attempts as
    select delivery_id, attempt, started_at, duration_ms, outcome, error, output
    from earlier_attempts
    union all
    select id, attempts, final_started_at, final_duration_ms, final_outcome, last_error,
           final_output
    from deliveries
    where final_outcome is not null;
