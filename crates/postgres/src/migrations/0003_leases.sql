-- Who runs a running log: one process at a time, until its lease expires (see
-- agentd_session::lease). Expiry is the database's clock, so hosts need not agree on time.
CREATE TABLE leases (
    log_id      TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
