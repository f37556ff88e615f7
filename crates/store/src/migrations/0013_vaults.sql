-- Vaults and their credentials. A credential's public face is its JSON body; its secrets are
-- `sealed` (AEAD, by agentd-vault, the credential id as associated data), never in the clear.
-- `match_key` (the MCP server URL, or the environment variable's name) is unique among a
-- vault's live credentials. `vault_key` holds one row: a known value sealed with the vault
-- key, so a wrong key is found at start instead of at the first credential used.
CREATE TABLE vaults (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
    body          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    archived_at   TEXT
);
CREATE INDEX vaults_by_workspace ON vaults(workspace_id, id);

CREATE TABLE vault_credentials (
    id            TEXT PRIMARY KEY,
    vault_id      TEXT NOT NULL REFERENCES vaults(id),
    workspace_id  TEXT NOT NULL,
    match_key     TEXT NOT NULL,
    body          TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    archived_at   TEXT
);
CREATE INDEX vault_credentials_by_vault ON vault_credentials(vault_id, id);
CREATE UNIQUE INDEX vault_credentials_live_match ON vault_credentials(vault_id, match_key)
    WHERE archived_at IS NULL;

CREATE TABLE vault_key (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    check_value  BLOB NOT NULL
);

-- The vaults a session was created with, as a JSON array of ids.
ALTER TABLE sessions ADD COLUMN vault_ids TEXT NOT NULL DEFAULT '[]';
