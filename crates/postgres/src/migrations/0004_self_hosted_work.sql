-- The work queue of self_hosted environments, as in the SQLite schema's 0008: items stored
-- whole as JSON (`agentd_catalog::work::WorkItem`), at most one live item per session, and
-- environment keys kept as SHA-256 hashes.
CREATE TABLE work_items (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    environment_id  TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    state           TEXT NOT NULL,
    body            JSON NOT NULL
);
CREATE INDEX work_by_environment ON work_items (environment_id, id);
CREATE INDEX work_by_session ON work_items (session_id, id);
CREATE UNIQUE INDEX work_one_live_per_session ON work_items (session_id) WHERE state <> 'stopped';
CREATE INDEX work_live ON work_items (state, id) WHERE state <> 'stopped';

CREATE TABLE environment_keys (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    environment_id  TEXT NOT NULL,
    hash            BYTEA NOT NULL UNIQUE,
    name            TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX environment_keys_by_environment ON environment_keys (environment_id, id);

-- A worker answers a call once, like every other answer.
CREATE UNIQUE INDEX events_one_tool_result
    ON events (log_id, (body ->> 'tool_use_id'))
    WHERE type = 'user.tool_result';
