-- The authorization tokens of sessions' repository resources, sealed with the vault key (the
-- resource id is the associated data). Kept apart from sessions.resources, which the API shows
-- as it is, and resealed with the credentials when the key rotates.
CREATE TABLE resource_secrets (
    resource_id TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    sealed      BYTEA NOT NULL
);
CREATE INDEX resource_secrets_by_session ON resource_secrets (session_id);
