ALTER TABLE applied_objects DROP COLUMN resource;
