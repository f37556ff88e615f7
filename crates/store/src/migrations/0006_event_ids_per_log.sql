-- An event id is unique within a log, not across logs: a worker thread's event that needs the
-- user (a custom tool call, a call awaiting confirmation, the user's answer) is also shown on
-- its session's log, as the same event with the same id.
CREATE TABLE events_new (
    session_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    id            TEXT NOT NULL,
    type          TEXT NOT NULL,
    processed_at  TEXT NOT NULL,
    body          TEXT NOT NULL,
    private       TEXT,
    PRIMARY KEY (session_id, seq),
    UNIQUE (session_id, id)
) WITHOUT ROWID;
INSERT INTO events_new (session_id, seq, id, type, processed_at, body, private)
    SELECT session_id, seq, id, type, processed_at, body, private FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE UNIQUE INDEX events_one_custom_tool_result
    ON events (session_id, json_extract(body, '$.custom_tool_use_id'))
    WHERE type = 'user.custom_tool_result';
CREATE UNIQUE INDEX events_one_tool_confirmation
    ON events (session_id, json_extract(body, '$.tool_use_id'))
    WHERE type = 'user.tool_confirmation';
