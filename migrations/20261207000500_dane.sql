-- DANE publication's memory (issue "replicas"; was `<[state] dir>/dane.json`). Portable SQL,
-- as 20261207000200.

-- One row per MX host: the key its certificate presented, our TLSA values (published_at,
-- withdraw_at) and an unannounced rollover, as one `dane::memory::Host` in JSON. Written under
-- the "dane" lease with its token, so a withdrawal scheduled by one replica is the next
-- holder's too.
CREATE TABLE IF NOT EXISTS store_dane (
    host       TEXT PRIMARY KEY,         -- no trailing dot
    entry      TEXT NOT NULL,            -- dane::memory::Host as JSON
    token      BIGINT NOT NULL,          -- the lease's token at the write; 0: imported
    updated_at BIGINT NOT NULL           -- the store's clock, unix seconds
);
