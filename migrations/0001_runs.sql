-- Experiments, runs, metrics, artifacts and workers. Postgres is the record of truth:
-- the queue on Redis only wakes workers up, and every status change is a guarded UPDATE here.

CREATE TABLE experiments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('train')),
    status        TEXT NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    params        JSONB NOT NULL,
    parent_run_id BIGINT REFERENCES runs (id),
    queue         TEXT NOT NULL DEFAULT 'default' CHECK (queue ~ '^[a-z0-9_-]{1,64}$'),
    priority      INTEGER NOT NULL DEFAULT 0,
    -- Attempts started so far; the attempt a worker holds is its fencing token.
    attempt       INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    worker_id     TEXT,
    error         TEXT,
    cancel_requested_at TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ
);

CREATE INDEX runs_experiment_idx ON runs (experiment_id, id DESC);
CREATE INDEX runs_status_idx ON runs (status, id DESC);
-- The scheduler's scan: queued runs in the order they should start.
CREATE INDEX runs_queued_idx ON runs (queue, priority DESC, id) WHERE status = 'queued';

-- One value per run, key and step: a repeated write of the same point is a no-op.
CREATE TABLE metrics (
    run_id      BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    step        BIGINT NOT NULL CHECK (step >= 0),
    value       DOUBLE PRECISION NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key, step)
);

CREATE TABLE artifacts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    -- Relative to the artifact directory; never absolute, never with `..`.
    path       TEXT NOT NULL CHECK (path !~ '(^/|\.\.)'),
    bytes      BIGINT NOT NULL CHECK (bytes >= 0),
    sha256     TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (run_id, path)
);

CREATE TABLE workers (
    id                TEXT PRIMARY KEY,
    host              TEXT NOT NULL,
    device            TEXT NOT NULL,
    queues            TEXT[] NOT NULL,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    current_run_id    BIGINT REFERENCES runs (id) ON DELETE SET NULL
);
