-- The lease index was partial on `status = 'running'`. Statements that address running
-- deliveries by id (finish, heartbeat, release) also say `status = 'running'`, so the
-- planner could answer them from this small index instead of the primary key, and then
-- walked every entry that finished deliveries had left in it since the last vacuum:
-- the later in a drain, the slower each finish. Keyed on the lease alone, the index
-- still serves the search for expired leases (`lease_expires_at < now()`), and no
-- statement that names deliveries by id can use it.
drop index switchyard.deliveries_leases;
create index deliveries_leases on switchyard.deliveries (lease_expires_at)
    where lease_expires_at is not null;
