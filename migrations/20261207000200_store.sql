-- The daemon's memory, shared by every replica (issue "replicas"). Portable SQL: the same file
-- runs on SQLite and PostgreSQL.

-- The id history and the retirement schedule, as events in the order the store took them.
-- `seq` is given by the writer inside its transaction (max + 1), so rows become visible in
-- order with no gaps: a replica reads on from the last `seq` it saw.
CREATE TABLE IF NOT EXISTS store_history (
    seq         BIGINT PRIMARY KEY,
    replica     TEXT NOT NULL,           -- who wrote it ([state] replica)
    recorded_at BIGINT NOT NULL,         -- the store's clock, unix seconds
    event       TEXT NOT NULL            -- one state::history::Event as JSON
);

-- One row per fact about the store itself: what was imported, and when.
CREATE TABLE IF NOT EXISTS store_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
