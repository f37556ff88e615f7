-- Files uploaded through the Files API. The bytes live in the row: files here are rubrics and
-- inputs of a few MiB at most (uploads are capped), and one transaction keeps row and bytes
-- together.
CREATE TABLE files (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    filename      TEXT NOT NULL,
    mime_type     TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    content       BLOB NOT NULL
);
CREATE INDEX files_by_workspace ON files(workspace_id, id);
