-- The session log: sessions and worker threads with the projections of their logs, and the
-- events of every log. Columns mirror the SQLite schema (crates/store/src/migrations) as of
-- its 0007, so the catalog can land on these tables; JSON is JSONB (event bodies JSON), timestamps timestamptz
-- (microseconds, the precision the SQLite store keeps too). The catalog's own tables
-- (workspaces, keys, agents, environments, files) and the session's reference to its
-- workspace come with the catalog.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    agent_version   INTEGER NOT NULL,
    agent           JSONB NOT NULL,
    environment_id  TEXT NOT NULL,
    status          TEXT NOT NULL,
    title           TEXT,
    metadata        JSONB NOT NULL,
    usage           JSONB NOT NULL,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    active_ms       BIGINT NOT NULL DEFAULT 0,
    running_since   TIMESTAMPTZ,
    outcomes        JSONB NOT NULL DEFAULT '[]',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    archived_at     TIMESTAMPTZ
);
CREATE INDEX sessions_by_workspace ON sessions (workspace_id, id);
CREATE INDEX sessions_by_status ON sessions (status);

-- A session's primary thread is the session itself; a worker thread has a row here holding
-- the projections a session row holds, and a log of its own keyed by its id.
CREATE TABLE threads (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL,
    parent_thread_id  TEXT NOT NULL,
    agent_name        TEXT NOT NULL,
    agent             JSONB NOT NULL,
    status            TEXT NOT NULL,
    last_seq          BIGINT NOT NULL DEFAULT 0,
    usage             JSONB NOT NULL,
    active_ms         BIGINT NOT NULL DEFAULT 0,
    running_since     TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    archived_at       TIMESTAMPTZ
);
CREATE INDEX threads_by_session ON threads (session_id, id);
CREATE INDEX threads_by_status ON threads (status);

-- `log_id` is a session's id or a worker thread's. An event id is unique within a log, not
-- across logs: a worker's event that needs the user is copied, same id, onto its session's log.
CREATE TABLE events (
    log_id        TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    id            TEXT NOT NULL,
    type          TEXT NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL,
    -- JSON, not JSONB: the text is kept as written, so a log copied from SQLite (or back)
    -- is the same bytes.
    body          JSON NOT NULL,
    private       JSON,
    PRIMARY KEY (log_id, seq),
    UNIQUE (log_id, id)
);
-- A tool call is answered once: a second result or confirmation for the same call is refused
-- by the database itself, so a client retrying a POST whose response it lost cannot log it twice.
CREATE UNIQUE INDEX events_one_custom_tool_result
    ON events (log_id, (body ->> 'custom_tool_use_id'))
    WHERE type = 'user.custom_tool_result';
CREATE UNIQUE INDEX events_one_tool_confirmation
    ON events (log_id, (body ->> 'tool_use_id'))
    WHERE type = 'user.tool_confirmation';
