-- One row that `/readyz` rewrites, so that ready means "can commit a write to the
-- switchyard schema", not only "answers a query": a server in recovery, a read-only
-- role or transaction, or a full disk all fail the probe.
create table switchyard.readiness (
    id          int primary key check (id = 1),
    checked_at  timestamptz not null
);
