-- The retry policy. An attempt that failed for a reason outside the run (its worker was lost,
-- ran out of memory, lost Postgres, could not write its files) ends `lost` or `infra_failed`,
-- and the run goes back to the queue after a backoff that doubles with each such attempt,
-- until `max_attempts` of them failed. A run whose input or model is at fault fails at once
-- (the worker records that itself). `retry_at` holds a queued run back until its backoff is over.

ALTER TABLE runs ADD COLUMN retry_at TIMESTAMPTZ;

ALTER TABLE run_attempts DROP CONSTRAINT run_attempts_outcome_check;
ALTER TABLE run_attempts ADD CONSTRAINT run_attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'lost', 'handed_back', 'stopped_early', 'infra_failed'));

-- Ends attempt `p_attempt` of a running run with an infrastructure failure and queues the run
-- again after its backoff, or fails it once `p_max_attempts` attempts failed that way.
-- Returns the run's new status, or NULL when the attempt no longer holds the run.
CREATE FUNCTION retry_or_fail(
    p_run BIGINT, p_attempt INTEGER, p_outcome TEXT, p_error TEXT,
    p_max_attempts INTEGER, p_first_backoff_ms BIGINT, p_max_backoff_ms BIGINT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    failures INTEGER;
    backoff_ms BIGINT;
BEGIN
    PERFORM 1 FROM runs WHERE id = p_run AND attempt = p_attempt AND status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE run_attempts SET outcome = p_outcome, error = p_error, ended_at = now()
    WHERE run_id = p_run AND attempt = p_attempt;
    SELECT count(*) INTO failures FROM run_attempts
    WHERE run_id = p_run AND outcome IN ('lost', 'infra_failed');
    IF failures >= p_max_attempts THEN
        UPDATE runs SET status = 'failed', finished_at = now(), lease_expires_at = NULL,
               error = format('%s attempts failed on infrastructure problems, the last: %s; not retried again',
                              failures, p_error)
        WHERE id = p_run;
        RETURN 'failed';
    END IF;
    backoff_ms := least(p_max_backoff_ms::DOUBLE PRECISION, p_first_backoff_ms * 2 ^ least(failures - 1, 40))::BIGINT;
    UPDATE runs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL,
           retry_at = now() + make_interval(secs => backoff_ms / 1000.0),
           error = format('attempt %s: %s; retrying after %s s', p_attempt, p_error, round(backoff_ms / 1000.0, 1))
    WHERE id = p_run;
    RETURN 'queued';
END
$$;

-- A worker's current run is cleared whenever that run stops running, whatever stopped it
-- (the worker, a time limit, the lease reaper).
CREATE FUNCTION free_worker_of_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workers SET current_run_id = NULL WHERE current_run_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_free_worker
    AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (OLD.status = 'running' AND NEW.status <> 'running')
    EXECUTE FUNCTION free_worker_of_run();
