-- Hyper-parameter sweeps. Every trial is recorded when the sweep is submitted (validated like
-- any run): the first `max_parallel` queued, the rest waiting. The database releases the next
-- waiting trial whenever one ends, whatever ended it, so a sweep needs no process of its own
-- and survives any of them restarting.

CREATE TABLE sweeps (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    submitted_by  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- The request as validated: template, space, strategy, seed, limits, metric, direction.
    spec          JSONB NOT NULL,
    max_parallel  INTEGER NOT NULL CHECK (max_parallel >= 1),
    metric        TEXT NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('max', 'min')),
    status        TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'cancelled')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ
);

CREATE INDEX sweeps_experiment_idx ON sweeps (experiment_id, id DESC);

-- Every run of a trial (its pipeline too) names the sweep and the trial's number.
ALTER TABLE runs ADD COLUMN sweep_id BIGINT REFERENCES sweeps (id) ON DELETE SET NULL;
ALTER TABLE runs ADD COLUMN trial INTEGER CHECK (trial >= 0);
CREATE INDEX runs_sweep_idx ON runs (sweep_id, trial) WHERE sweep_id IS NOT NULL;

-- When a trial's root run ends: queue waiting trials up to `max_parallel` trials in flight
-- (lowest trial number first), and finish the sweep once no trial is left to run.
CREATE FUNCTION release_sweep_trials() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sweep RECORD;
    in_flight INTEGER;
    trial_run BIGINT;
BEGIN
    SELECT * INTO sweep FROM sweeps WHERE id = NEW.sweep_id FOR UPDATE;
    IF sweep.status <> 'running' THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO in_flight FROM runs
    WHERE sweep_id = NEW.sweep_id AND parent_run_id IS NULL AND status IN ('queued', 'running');
    FOR trial_run IN
        UPDATE runs SET status = 'queued'
        WHERE id IN (
            SELECT id FROM runs
            WHERE sweep_id = NEW.sweep_id AND parent_run_id IS NULL AND status = 'waiting'
            ORDER BY trial, id
            LIMIT greatest(0, sweep.max_parallel - in_flight)
        )
        RETURNING id
    LOOP
        PERFORM pg_notify('cairn_runs_queued', trial_run::text);
    END LOOP;
    IF NOT EXISTS (
        SELECT 1 FROM runs WHERE sweep_id = NEW.sweep_id AND status IN ('waiting', 'queued', 'running')
    ) THEN
        UPDATE sweeps SET status = 'finished', finished_at = now() WHERE id = NEW.sweep_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_release_sweep_trials
    AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (NEW.sweep_id IS NOT NULL AND NEW.status IN ('succeeded', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION release_sweep_trials();
