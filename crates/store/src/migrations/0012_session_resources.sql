-- A session's resources (`agentd_wire::resource::Resource`), as a JSON list on its row:
-- read with the session, changed whole under the session's lock.
ALTER TABLE sessions ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
