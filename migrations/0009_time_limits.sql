-- A run may name the most wall time it may take from its first start; the scheduler fails a
-- run past it, and its worker, finding the run no longer running, stops without writing.
ALTER TABLE runs ADD COLUMN time_limit_seconds INTEGER CHECK (time_limit_seconds > 0);
CREATE INDEX runs_time_limited_idx ON runs (started_at) WHERE status = 'running' AND time_limit_seconds IS NOT NULL;
