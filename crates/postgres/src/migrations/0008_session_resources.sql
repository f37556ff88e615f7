-- A session's resources (`agentd_wire::resource::Resource`), as in the SQLite schema's 0012.
ALTER TABLE sessions ADD COLUMN resources JSONB NOT NULL DEFAULT '[]';
