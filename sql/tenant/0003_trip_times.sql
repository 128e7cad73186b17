-- A trip cannot complete before it started, whichever request set the two times (a PATCH may set
-- only one of them). NOT VALID: rows written before this migration are not re-checked, every
-- write from now on is.
ALTER TABLE trips
    ADD CONSTRAINT trips_completed_at_check
    CHECK (completed_at IS NULL OR started_at IS NULL OR completed_at >= started_at) NOT VALID;
