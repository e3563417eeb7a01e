-- The OpenTelemetry trace an object was applied in: the importer's trace,
-- continued across the queue, so any row leads back to the fetch that
-- produced it (posts.source_object -> applied_objects.trace_id).
ALTER TABLE applied_objects ADD COLUMN trace_id TEXT;
