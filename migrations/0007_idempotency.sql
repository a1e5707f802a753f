-- Responses to POST requests that carried an Idempotency-Key, kept 24 hours so a retried
-- request gets the first response instead of creating something twice. `scope` is the
-- sha256 of the bearer token; `status` is NULL while the first request is in progress.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint  TEXT NOT NULL,
    status       SMALLINT,
    content_type TEXT,
    body         BYTEA,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
