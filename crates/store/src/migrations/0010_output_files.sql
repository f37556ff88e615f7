-- Files an agent left in /mnt/session/outputs/, collected as Files API files scoped to their
-- session. One row per (session, path): a file overwritten in a later turn replaces its row
-- (a new id) in the transaction that stores the new bytes; the same bytes again are left as
-- they are, so a collection made again after a crash adds nothing. A collected file deleted
-- through the API keeps its row, emptied, as a tombstone (deleted_at): the same bytes left in
-- the outputs are not collected again.
ALTER TABLE files ADD COLUMN scope_id TEXT;
ALTER TABLE files ADD COLUMN scope_path TEXT;
ALTER TABLE files ADD COLUMN sha256 TEXT;
ALTER TABLE files ADD COLUMN deleted_at TEXT;
CREATE UNIQUE INDEX files_by_scope_path ON files(scope_id, scope_path);
CREATE INDEX files_by_scope ON files(workspace_id, scope_id, id);
