-- A claim no longer changes any indexed column, so Postgres can make it a HOT update:
-- the claimed version of the row goes on the same page and no index gets an entry.
-- Before, a claim set `status = 'running'` and a lease time that the lease index
-- covered, so each claim wrote a new entry in the primary key, the event index and the
-- lease index, and each finish three more in the first two. Now a claimed delivery
-- stays `pending` and holds a lease (`lease_token` set); the store reports it as
-- `running`. Its index entries stay valid until the finish moves it out of `pending`.
--
-- A HOT update needs room on the row's page, so the table's pages are filled to 40%
-- on insert (the default is 100%): a claimed version, with its lease, fits next to the
-- row it replaces. Pages written before this migration keep their fill.
--
-- Expired leases are found through `deliveries_runnable`, which now holds every
-- claimed delivery: an index on the lease would have to change when a claim sets it.
update switchyard.deliveries set status = 'pending' where status = 'running';

drop index switchyard.deliveries_leases;

drop index switchyard.deliveries_ordering;
create index deliveries_ordering on switchyard.deliveries (trigger, ordering_key, id)
    where ordering_key is not null and status = 'pending';

alter table switchyard.deliveries drop constraint deliveries_status_check;
alter table switchyard.deliveries add constraint deliveries_status_check
    check (status in ('pending', 'succeeded', 'dead', 'replayed'));

alter table switchyard.deliveries set (fillfactor = 40);
