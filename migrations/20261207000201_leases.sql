-- Leases and the drift findings (issue "replicas"). Portable SQL, as 20261207000200.

-- Work that must happen once across replicas is done under a lease: one row per job. The
-- token grows by one at every change of holder (a fencing token): a write made under a lease
-- names it, so a holder that lost the lease cannot overwrite its successor's work. Expiry is
-- by the store's clock, never a replica's.
CREATE TABLE IF NOT EXISTS store_leases (
    job        TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,            -- "<replica>/<pid>": one process
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL           -- unix seconds, the store's clock
);

-- The drift findings of the last round (the JSON `drift` keeps across runs), written under
-- the "drift" lease with its token.
CREATE TABLE IF NOT EXISTS store_drift (
    name       TEXT PRIMARY KEY,         -- "last"
    report     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    checked_at BIGINT NOT NULL
);
