-- When each once-only job was last done (issue "replicas"). Portable SQL, as 20261207000200.

-- A periodic job (a reconcile round) done by one replica under its lease is not done again
-- by the others within its period: they read `done_at` here, by the store's clock. Written
-- in the lease's transaction, with its token (fenced).
CREATE TABLE IF NOT EXISTS store_jobs (
    job     TEXT PRIMARY KEY,
    done_at BIGINT NOT NULL,             -- unix seconds, the store's clock
    token   BIGINT NOT NULL
);
