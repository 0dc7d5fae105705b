-- A claim no longer moves a delivery out of `pending`: it gives it a lease
-- (`lease_token` set), and the store reports a pending delivery holding a lease as
-- `running`, as the Postgres store does since its migration 0007. The claim then sets
-- only columns that no index covers, so it changes no index: before, it took the row
-- out of `deliveries_runnable` and put it in `deliveries_leases`, and the finish took
-- it out of the latter. Expired leases are found through `deliveries_runnable`, which
-- now holds every claimed delivery. The `status` check still allows `running`, which
-- nothing writes any more: SQLite changes a check only by rebuilding the table.
update deliveries set status = 'pending' where status = 'running';

drop index deliveries_leases;

drop index deliveries_ordering;
create index deliveries_ordering on deliveries (trigger, ordering_key, id)
    where ordering_key is not null and status = 'pending';
