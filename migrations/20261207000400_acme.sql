-- ACME in the store (issue "replicas"): account, certificates, challenge answers and the CA's
-- limits, so that replicas share no disk. Portable SQL, as 20261207000200.

-- The account of each ACME directory URL: instant-acme's credentials JSON (its private key
-- inside), sealed when [state] key_file/key_env is set.
CREATE TABLE IF NOT EXISTS store_acme_accounts (
    directory   TEXT PRIMARY KEY,
    credentials TEXT NOT NULL,
    updated_at  BIGINT NOT NULL           -- the store's clock, unix seconds
);

-- One certificate per name, written under the lease `acme:<name>` with its token (fenced).
-- `seq` grows with every write across all names (max + 1 in the writer's transaction, unique,
-- so rows become visible in order): every replica polls `seq > last` and serves what others
-- obtained.
CREATE TABLE IF NOT EXISTS store_acme_certs (
    name       TEXT PRIMARY KEY,          -- mta-sts.<domain>
    chain_pem  TEXT NOT NULL,             -- leaf first, then the intermediates
    key_pem    TEXT NOT NULL,             -- PKCS#8 PEM; sealed when a key is configured
    not_before BIGINT NOT NULL,           -- unix seconds, from the leaf
    not_after  BIGINT NOT NULL,
    renew_at   BIGINT NOT NULL,           -- when renewal is due (our point or the CA's window)
    token      BIGINT NOT NULL,           -- the lease token it was written under
    seq        BIGINT NOT NULL,
    replica    TEXT NOT NULL,             -- who obtained it
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS store_acme_certs_seq ON store_acme_certs (seq);
CREATE INDEX IF NOT EXISTS store_acme_certs_renew ON store_acme_certs (renew_at);

-- Challenge answers of the orders in flight, for whichever replica the CA reaches:
-- kind 'http-01' keyed by token, 'tls-alpn-01' keyed by host name; the value is the key
-- authorization (a tls-alpn-01 validation certificate is made from it where it is asked for).
CREATE TABLE IF NOT EXISTS store_acme_challenges (
    kind              TEXT NOT NULL,
    id                TEXT NOT NULL,
    key_authorization TEXT NOT NULL,
    expires_at        BIGINT NOT NULL,    -- the store's clock; an order's answer outlives it never
    PRIMARY KEY (kind, id)
);

-- What the CA's limits left us, per ACME directory URL: acme::limits's JSON document, merged
-- by every writer in one transaction.
CREATE TABLE IF NOT EXISTS store_acme_limits (
    directory  TEXT PRIMARY KEY,
    limits     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
