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

-- A trial that early stopping ended at a rung: finished, metrics kept, children cancelled.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('waiting', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'stopped_early'));
ALTER TABLE run_attempts DROP CONSTRAINT run_attempts_outcome_check;
ALTER TABLE run_attempts ADD CONSTRAINT run_attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'lost', 'handed_back', 'stopped_early'));
DROP TRIGGER runs_settle_waiting_children ON runs;
CREATE TRIGGER runs_settle_waiting_children
    AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled', 'stopped_early') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION settle_waiting_children();

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
    WHEN (NEW.sweep_id IS NOT NULL AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'stopped_early')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION release_sweep_trials();

-- Asynchronous successive halving. A trial's root run that has just finished epoch `epoch`
-- asks whether to go on. Rungs sit at `min_epochs * reduction_factor^k`; at a rung, a trial
-- goes on only if fewer than 1/reduction_factor of the trials that reached that rung so far
-- did better on the sweep's metric (at least one always goes on). Returns the rung (k) that
-- stops the run, or NULL.
CREATE FUNCTION asha_stopping_rung(p_run BIGINT, p_epoch INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    trial RECORD;
    sweep RECORD;
    eta INTEGER;
    rung_epoch BIGINT;
    rung INTEGER := 0;
    mine DOUBLE PRECISION;
    reached INTEGER;
    better INTEGER;
BEGIN
    SELECT sweep_id, parent_run_id INTO trial FROM runs WHERE id = p_run;
    IF trial.sweep_id IS NULL OR trial.parent_run_id IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO sweep FROM sweeps WHERE id = trial.sweep_id;
    IF jsonb_typeof(sweep.spec -> 'asha') IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    END IF;
    eta := (sweep.spec -> 'asha' ->> 'reduction_factor')::int;
    rung_epoch := (sweep.spec -> 'asha' ->> 'min_epochs')::int;
    WHILE rung_epoch < p_epoch LOOP
        rung_epoch := rung_epoch * eta;
        rung := rung + 1;
    END LOOP;
    IF rung_epoch <> p_epoch THEN
        RETURN NULL;
    END IF;
    SELECT value INTO mine FROM metrics WHERE run_id = p_run AND key = sweep.metric AND step = p_epoch;
    IF mine IS NULL OR mine = 'NaN' THEN
        RETURN CASE WHEN mine IS NULL THEN NULL ELSE rung END;
    END IF;
    SELECT count(*),
           count(*) FILTER (WHERE CASE WHEN sweep.direction = 'max' THEN m.value > mine ELSE m.value < mine END
                                  AND m.value <> 'NaN')
      INTO reached, better
    FROM runs t JOIN metrics m ON m.run_id = t.id AND m.key = sweep.metric AND m.step = p_epoch
    WHERE t.sweep_id = trial.sweep_id AND t.parent_run_id IS NULL;
    IF better >= greatest(1, reached / eta) THEN
        RETURN rung;
    END IF;
    RETURN NULL;
END
$$;
