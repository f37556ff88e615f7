-- The work queue of self_hosted environments: one row per work item, stored whole as JSON
-- (`agentd_catalog::work::WorkItem`) with the columns queries filter on. A session has at most
-- one live item, which the database itself keeps.
CREATE TABLE work_items (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    environment_id  TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    state           TEXT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX work_by_environment ON work_items (environment_id, id);
CREATE INDEX work_by_session ON work_items (session_id, id);
CREATE UNIQUE INDEX work_one_live_per_session ON work_items (session_id) WHERE state <> 'stopped';
CREATE INDEX work_live ON work_items (state, id) WHERE state <> 'stopped';

-- Environment keys, kept as SHA-256 hashes like API keys; a revoked key stays listed.
CREATE TABLE environment_keys (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    environment_id  TEXT NOT NULL,
    hash            BLOB NOT NULL UNIQUE,
    name            TEXT,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT
);
CREATE INDEX environment_keys_by_environment ON environment_keys (environment_id, id);

-- A worker answers a call once, like every other answer.
CREATE UNIQUE INDEX events_one_tool_result
    ON events (session_id, json_extract(body, '$.tool_use_id'))
    WHERE type = 'user.tool_result';
