-- One row that `/readyz` rewrites, so that ready means "can commit a write", not only
-- "answers a query": a read-only file, a full disk or a broken connection all fail
-- the probe.
create table readiness (
    id          integer primary key check (id = 1),
    checked_at  text not null
);
