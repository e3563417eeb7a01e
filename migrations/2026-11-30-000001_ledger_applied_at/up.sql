-- `transformer status` asks what was applied in the last hour and day, and
-- when the last object was: without this, a scan of the whole ledger.
CREATE INDEX applied_objects_applied_at_idx ON applied_objects (applied_at);
