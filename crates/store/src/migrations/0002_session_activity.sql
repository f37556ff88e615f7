-- Session stats (active time) and the recovery scan on start both need these.
ALTER TABLE sessions ADD COLUMN active_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN running_since TEXT;
CREATE INDEX sessions_by_status ON sessions(status);
