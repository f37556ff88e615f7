-- Rosters: `multiagent` was stored as sent and never used; from here on it is a checked,
-- pinned roster. Values written before could not be read as one, so they are dropped.
UPDATE agent_versions SET spec = json_set(spec, '$.multiagent', json('null'))
    WHERE json_type(spec, '$.multiagent') IS NOT NULL AND json_type(spec, '$.multiagent') != 'null';
UPDATE sessions SET agent = json_set(agent, '$.multiagent', json('null'))
    WHERE json_type(agent, '$.multiagent') IS NOT NULL AND json_type(agent, '$.multiagent') != 'null';

-- Threads. A session's primary thread is the session itself: its log is the session's log. Each
-- child thread (a worker a coordinator started) has a log of its own in `events`, whose
-- `session_id` column then holds the thread's id, and a row here with the same projections a
-- session row has (status, last position, usage, active time).
CREATE TABLE threads (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL,
    parent_thread_id  TEXT NOT NULL,
    agent_name        TEXT NOT NULL,
    agent             TEXT NOT NULL,
    status            TEXT NOT NULL,
    last_seq          INTEGER NOT NULL DEFAULT 0,
    usage             TEXT NOT NULL,
    active_ms         INTEGER NOT NULL DEFAULT 0,
    running_since     TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    archived_at       TEXT
);
CREATE INDEX threads_by_session ON threads(session_id, id);
CREATE INDEX threads_by_status ON threads(status);
