-- Claims read runnable deliveries in (run_at, id) order: index both columns so a claim
-- reads the first rows of the index instead of sorting the backlog.
drop index deliveries_runnable;
create index deliveries_runnable on deliveries (run_at, id) where status = 'pending';
