-- Teams, users, roles, API tokens, dashboard sessions and the audit log.
-- Rewrites data: experiments created before teams existed are given to a team named
-- `default`, because every experiment must belong to a team.

CREATE TABLE teams (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    -- argon2id, PHC string format.
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    team_id BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('viewer', 'member', 'admin')),
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- sha256 of the token; the token itself is shown once and never stored.
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE sessions (
    -- sha256 of the cookie value.
    id_hash    TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    user_id     BIGINT REFERENCES users (id) ON DELETE SET NULL,
    team_id     BIGINT REFERENCES teams (id) ON DELETE CASCADE,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   BIGINT,
    details     JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_team_idx ON audit_log (team_id, id DESC);

ALTER TABLE experiments ADD COLUMN team_id BIGINT REFERENCES teams (id) ON DELETE CASCADE;
INSERT INTO teams (name) SELECT 'default' WHERE EXISTS (SELECT 1 FROM experiments);
UPDATE experiments SET team_id = (SELECT id FROM teams WHERE name = 'default') WHERE team_id IS NULL;
ALTER TABLE experiments ALTER COLUMN team_id SET NOT NULL;
CREATE INDEX experiments_team_idx ON experiments (team_id);

-- Experiment names are unique within a team: a global constraint would tell one team the
-- names another team uses.
ALTER TABLE experiments DROP CONSTRAINT experiments_name_key;
ALTER TABLE experiments ADD CONSTRAINT experiments_team_name_key UNIQUE (team_id, name);
