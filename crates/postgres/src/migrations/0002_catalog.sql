-- The catalog: workspaces and their API keys, agents and their immutable versions,
-- environments and uploaded files. Columns mirror the SQLite schema (crates/store/src/migrations)
-- as of its 0007; timestamps are timestamptz, bytes are bytea.
CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    hash          BYTEA NOT NULL UNIQUE,
    name          TEXT,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    latest_version  INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    archived_at     TIMESTAMPTZ
);
CREATE INDEX agents_by_workspace ON agents (workspace_id, id);

-- The spec is JSON, not JSONB, for the reason event bodies are: kept as written, so a copy
-- between backends is the same bytes.
CREATE TABLE agent_versions (
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    version     INTEGER NOT NULL,
    spec        JSON NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE environments (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    body          JSON NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    archived_at   TIMESTAMPTZ
);
CREATE INDEX environments_by_workspace ON environments (workspace_id, id);

CREATE TABLE files (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    filename      TEXT NOT NULL,
    mime_type     TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    content       BYTEA NOT NULL
);
CREATE INDEX files_by_workspace ON files (workspace_id, id);

-- Sessions written before this step name workspaces nothing recorded: give each one a row, so
-- the reference below holds and their data stays reachable.
INSERT INTO workspaces (id, name, created_at)
    SELECT DISTINCT workspace_id, workspace_id, now() FROM sessions
    ON CONFLICT DO NOTHING;
ALTER TABLE sessions
    ADD CONSTRAINT sessions_workspace_fk FOREIGN KEY (workspace_id) REFERENCES workspaces(id);
CREATE INDEX sessions_by_environment ON sessions (environment_id);
