ALTER TABLE applied_objects DROP COLUMN trace_id;
