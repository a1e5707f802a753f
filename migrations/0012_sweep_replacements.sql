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

-- When a trial's root run fails, the next spare becomes a new waiting trial. Row triggers on
-- one event fire in name order: `runs_record_replacement_trial` comes before
-- `runs_release_sweep_trials` (0008), which then queues the new trial like any waiting one and
-- does not finish the sweep while it waits.
CREATE FUNCTION record_replacement_trial() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    spare RECORD;
BEGIN
    PERFORM 1 FROM sweeps WHERE id = NEW.sweep_id AND status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    DELETE FROM sweep_spares
    WHERE (sweep_id, trial) = (SELECT sweep_id, trial FROM sweep_spares WHERE sweep_id = NEW.sweep_id
                               ORDER BY trial LIMIT 1)
    RETURNING trial, runs INTO spare;
    IF FOUND THEN
        PERFORM record_sweep_trial(NEW.sweep_id, spare.trial, spare.runs, false);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_record_replacement_trial
    AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (NEW.sweep_id IS NOT NULL AND NEW.parent_run_id IS NULL AND NEW.status = 'failed'
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION record_replacement_trial();

-- Spares live only while their sweep runs: finished or cancelled, it has none left.
CREATE FUNCTION drop_sweep_spares() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sweep_spares WHERE sweep_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER sweeps_drop_spares
    AFTER UPDATE OF status ON sweeps
    FOR EACH ROW
    WHEN (NEW.status <> 'running')
    EXECUTE FUNCTION drop_sweep_spares();
