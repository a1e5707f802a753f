-- Leases: a running run belongs to its worker only while the worker keeps renewing the lease.
-- The scheduler ends an expired attempt as lost and queues the run again (or fails it after
-- too many lost attempts). Each attempt is kept, for the run's timeline.

ALTER TABLE runs ADD COLUMN lease_expires_at TIMESTAMPTZ;

CREATE INDEX runs_leases_idx ON runs (lease_expires_at) WHERE status = 'running';

CREATE TABLE run_attempts (
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL CHECK (attempt >= 1),
    worker_id  TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at   TIMESTAMPTZ,
    -- NULL while it runs; then succeeded, failed, cancelled, lost (its lease expired) or
    -- handed_back (its worker shut down and returned the run to the queue).
    outcome    TEXT CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'lost', 'handed_back')),
    error      TEXT,
    PRIMARY KEY (run_id, attempt)
);
