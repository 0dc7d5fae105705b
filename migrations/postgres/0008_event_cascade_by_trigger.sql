-- A delivery no longer has a foreign key to its event. The key made every delivery
-- insert look its event up and lock it (FOR KEY SHARE), although every path that
-- creates deliveries already proves the event exists: an append inserts the event and
-- its deliveries in one statement, and a replay locks the event itself. With a fan-out
-- of 16 that was 16 lookups and locks per event; without them a fan-out delivers
-- about a tenth more per second.
--
-- What the key's `on delete cascade` did, these triggers do: deleting events deletes
-- their deliveries, in one statement per statement, and truncating the events
-- truncates the deliveries and their attempts.
alter table switchyard.deliveries drop constraint deliveries_event_id_fkey;

create function switchyard.delete_deliveries_of_deleted_events() returns trigger
language plpgsql as $$
begin
    delete from switchyard.deliveries d using deleted_events e where d.event_id = e.id;
    return null;
end
$$;

create trigger events_delete_deliveries
    after delete on switchyard.events
    referencing old table as deleted_events
    for each statement execute function switchyard.delete_deliveries_of_deleted_events();

create function switchyard.truncate_deliveries() returns trigger
language plpgsql as $$
begin
    truncate switchyard.deliveries cascade;
    return null;
end
$$;

create trigger events_truncate_deliveries
    after truncate on switchyard.events
    for each statement execute function switchyard.truncate_deliveries();
