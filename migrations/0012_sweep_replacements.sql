-- A failed trial is replaced, the sweep goes on. A random sweep's replacements are further
-- draws of the same seed, validated with the sweep and kept here as spares; the database
-- records the next spare as a new trial when a trial's root run fails (after the retry
-- policy), in the transaction that records the failure. Unused spares go when the sweep ends.

CREATE TABLE sweep_spares (
    sweep_id BIGINT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    trial    INTEGER NOT NULL CHECK (trial >= 0),
    -- The trial's runs as `record_sweep_trial` takes them.
    runs     JSONB NOT NULL,
    PRIMARY KEY (sweep_id, trial)
);

-- Records trial `p_trial` of a sweep from its validated runs, parents before children, each
-- naming its parent by index in the list (`parent`, null for the root): the root queued (and
-- announced to the scheduler) or waiting for the sweep to release it, the others waiting for
-- their parent. Returns the root's id. Both the API and replacements record trials here.
CREATE FUNCTION record_sweep_trial(p_sweep BIGINT, p_trial INTEGER, p_runs JSONB, p_queued BOOLEAN)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    sweep RECORD;
    planned JSONB;
    ids BIGINT[] := '{}';
    run_id BIGINT;
BEGIN
    SELECT * INTO sweep FROM sweeps WHERE id = p_sweep;
    FOR planned IN SELECT e.value FROM jsonb_array_elements(p_runs) WITH ORDINALITY AS e (value, position) ORDER BY e.position LOOP
        INSERT INTO runs (experiment_id, submitted_by, sweep_id, trial, kind, name, params, queue, priority,
                          time_limit_seconds, parent_run_id, status)
        VALUES (sweep.experiment_id, sweep.submitted_by, p_sweep, p_trial, planned ->> 'kind', planned ->> 'name',
                planned -> 'params', planned ->> 'queue', (planned ->> 'priority')::INTEGER,
                (planned ->> 'time_limit_seconds')::INTEGER, ids[(planned ->> 'parent')::INTEGER + 1],
                CASE WHEN planned ->> 'parent' IS NULL AND p_queued THEN 'queued' ELSE 'waiting' END)
        RETURNING id INTO run_id;
        ids := ids || run_id;
    END LOOP;
    IF p_queued THEN
        PERFORM pg_notify('cairn_runs_queued', ids[1]::TEXT);
    END IF;
    RETURN ids[1];
END
$$;

-- As in 0008, and: a trial whose root run failed is replaced by the next spare first.
CREATE OR REPLACE FUNCTION release_sweep_trials() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sweep RECORD;
    spare RECORD;
    in_flight INTEGER;
    trial_run BIGINT;
BEGIN
    SELECT * INTO sweep FROM sweeps WHERE id = NEW.sweep_id FOR UPDATE;
    IF sweep.status <> 'running' THEN
        RETURN NULL;
    END IF;
    IF NEW.status = 'failed' AND NEW.parent_run_id IS NULL THEN
        DELETE FROM sweep_spares
        WHERE (sweep_id, trial) = (SELECT sweep_id, trial FROM sweep_spares WHERE sweep_id = NEW.sweep_id
                                   ORDER BY trial LIMIT 1)
        RETURNING trial, runs INTO spare;
        IF FOUND THEN
            PERFORM record_sweep_trial(NEW.sweep_id, spare.trial, spare.runs, false);
        END IF;
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
        DELETE FROM sweep_spares WHERE sweep_id = NEW.sweep_id;
    END IF;
    RETURN NULL;
END
$$;
