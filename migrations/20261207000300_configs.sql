-- Who serves from this store (hardening issue, S3). Portable SQL, as 20261207000200.

-- One row per replica and config file, written at each start that passes the check: a
-- config that serves none of the domains in service here is refused at start, and these rows
-- name the configs it would have retired.
CREATE TABLE IF NOT EXISTS store_configs (
    replica    TEXT NOT NULL,            -- [state] replica
    config     TEXT NOT NULL,            -- the config file's path on that replica
    started_at BIGINT NOT NULL,          -- the store's clock, unix seconds
    PRIMARY KEY (replica, config)
);
