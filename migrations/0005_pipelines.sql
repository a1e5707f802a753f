-- Pipelines: pruning, quantization, ensemble evaluation and prediction runs, chained to the
-- run they start from. A child submitted before its parent succeeded waits; the database
-- itself settles it when the parent finishes, so no code path (worker, scheduler, cancel,
-- lease reaper) can leave a child waiting for a parent that will never succeed.

ALTER TABLE runs DROP CONSTRAINT runs_kind_check;
ALTER TABLE runs ADD CONSTRAINT runs_kind_check
    CHECK (kind IN ('train', 'evaluate', 'prune', 'quantize', 'ensemble', 'predict'));

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('waiting', 'queued', 'running', 'succeeded', 'failed', 'cancelled'));

CREATE INDEX runs_parent_idx ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- When a run finishes, its waiting children are queued (it succeeded) or cancelled with a
-- reason that names it. Cancelling a child fires this again for its own children.
CREATE FUNCTION settle_waiting_children() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    child BIGINT;
BEGIN
    IF NEW.status = 'succeeded' THEN
        FOR child IN
            UPDATE runs SET status = 'queued' WHERE parent_run_id = NEW.id AND status = 'waiting' RETURNING id
        LOOP
            PERFORM pg_notify('cairn_runs_queued', child::text);
        END LOOP;
    ELSE
        UPDATE runs SET status = 'cancelled', finished_at = now(),
               error = format('parent run %s %s', NEW.id, NEW.status)
        WHERE parent_run_id = NEW.id AND status = 'waiting';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_settle_waiting_children
    AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION settle_waiting_children();

-- IDX image files uploaded for predict runs, kept under the artifact directory and named by
-- their content (two uploads of the same file share it).
CREATE TABLE uploads (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id    BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    file_name  TEXT NOT NULL CHECK (length(file_name) BETWEEN 1 AND 200),
    path       TEXT NOT NULL CHECK (path !~ '(^/|\.\.)'),
    bytes      BIGINT NOT NULL CHECK (bytes >= 0),
    sha256     TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    images     INTEGER NOT NULL CHECK (images >= 1),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
