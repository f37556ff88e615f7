CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    hash          BLOB NOT NULL UNIQUE,
    name          TEXT,
    created_at    TEXT NOT NULL
);

CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    latest_version  INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    archived_at     TEXT
);
CREATE INDEX agents_by_workspace ON agents(workspace_id, id);

CREATE TABLE agent_versions (
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    version     INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (agent_id, version)
) WITHOUT ROWID;

CREATE TABLE environments (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    body          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    archived_at   TEXT
);
CREATE INDEX environments_by_workspace ON environments(workspace_id, id);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    agent_id        TEXT NOT NULL,
    agent_version   INTEGER NOT NULL,
    agent           TEXT NOT NULL,
    environment_id  TEXT NOT NULL,
    status          TEXT NOT NULL,
    title           TEXT,
    metadata        TEXT NOT NULL,
    usage           TEXT NOT NULL,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    archived_at     TEXT
);
CREATE INDEX sessions_by_workspace ON sessions(workspace_id, id);

CREATE TABLE events (
    session_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    processed_at  TEXT NOT NULL,
    body          TEXT NOT NULL,
    private       TEXT,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
