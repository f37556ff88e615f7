-- The workers seen polling each environment, for the queue's `workers_polling` figure: kept
-- in the database so every process of a deployment counts every worker. Rows older than the
-- window are pruned as new polls arrive.
CREATE TABLE work_pollers (
    environment_id  TEXT NOT NULL,
    worker_id       TEXT NOT NULL,
    polled_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (environment_id, worker_id)
);
CREATE INDEX work_pollers_by_time ON work_pollers (polled_at_ms);
