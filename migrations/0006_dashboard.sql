-- What the dashboard needs to answer "which run is best" over thousands of runs without
-- reading every metric point: run names and submitters, one summary row per run and metric
-- key kept by the database itself, and the log lines workers wrote for each run.

ALTER TABLE runs ADD COLUMN name TEXT CHECK (length(name) BETWEEN 1 AND 200);
ALTER TABLE runs ADD COLUMN submitted_by BIGINT REFERENCES users (id) ON DELETE SET NULL;

-- History filters by date across experiments.
CREATE INDEX runs_created_idx ON runs (created_at DESC, id DESC);

-- Per run and key: the value at the highest step (what tables show and sort by), the
-- extremes and the number of points. Maintained by a statement trigger on `metrics`, so
-- every writer (API, worker) keeps it right and a batch costs one aggregate, not one
-- statement per point.
CREATE TABLE run_metrics (
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    last_step  BIGINT NOT NULL,
    last_value DOUBLE PRECISION NOT NULL,
    min_value  DOUBLE PRECISION NOT NULL,
    max_value  DOUBLE PRECISION NOT NULL,
    points     BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- Sorting and filtering an experiment's runs by one metric.
CREATE INDEX run_metrics_key_idx ON run_metrics (key, last_value);

CREATE FUNCTION summarize_metrics() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- `inserted` holds only rows really inserted: points skipped by ON CONFLICT DO NOTHING
    -- are not counted twice.
    INSERT INTO run_metrics AS s (run_id, key, last_step, last_value, min_value, max_value, points)
    SELECT run_id, key, max(step), (array_agg(value ORDER BY step DESC))[1], min(value), max(value), count(*)
    FROM inserted
    GROUP BY run_id, key
    ON CONFLICT (run_id, key) DO UPDATE SET
        last_value = CASE WHEN excluded.last_step >= s.last_step THEN excluded.last_value ELSE s.last_value END,
        last_step  = greatest(s.last_step, excluded.last_step),
        min_value  = least(s.min_value, excluded.min_value),
        max_value  = greatest(s.max_value, excluded.max_value),
        points     = s.points + excluded.points;
    RETURN NULL;
END
$$;

CREATE TRIGGER metrics_summarize
    AFTER INSERT ON metrics
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION summarize_metrics();

INSERT INTO run_metrics (run_id, key, last_step, last_value, min_value, max_value, points)
SELECT run_id, key, max(step), (array_agg(value ORDER BY step DESC))[1], min(value), max(value), count(*)
FROM metrics
GROUP BY run_id, key;

-- The lines a worker logged while it executed a run (progress, warnings, the error).
CREATE TABLE run_logs (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    level   TEXT NOT NULL CHECK (level IN ('error', 'warn', 'info', 'debug', 'trace')),
    message TEXT NOT NULL
);

CREATE INDEX run_logs_run_idx ON run_logs (run_id, id);

-- Long curves as charts draw them (downsampled to about 1,000 points), cached on first view
-- and valid while `points` equals the run's point count for the key in `run_metrics`: a
-- finished run's curves are read from here, not rebuilt from every point on each view.
CREATE TABLE metric_overviews (
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    points BIGINT NOT NULL,
    steps  DOUBLE PRECISION[] NOT NULL,
    values DOUBLE PRECISION[] NOT NULL,
    PRIMARY KEY (run_id, key)
);
