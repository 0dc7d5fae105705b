-- Claims read runnable deliveries in (run_at, id) order. With the index on run_at
-- alone, every claim sorted the whole backlog; with both columns it reads the first
-- rows of the index and stops.
drop index switchyard.deliveries_runnable;
create index deliveries_runnable on switchyard.deliveries (run_at, id) where status = 'pending';
