-- TLS-RPT reports (RFC 8460 §4). Portable SQL: the same file runs on SQLite and PostgreSQL.
-- The natural key (report-id) links the tables, so no backend-specific autoincrement.

CREATE TABLE IF NOT EXISTS tlsrpt_reports (
    report_id    TEXT PRIMARY KEY,       -- RFC 8460 §4.4 "report-id": duplicates are refused
    organization TEXT NOT NULL,
    contact      TEXT,
    start_time   BIGINT NOT NULL,        -- unix seconds, UTC
    end_time     BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    source       TEXT NOT NULL,          -- "https" or "mail"
    json         TEXT NOT NULL           -- the report as received (decompressed)
);
CREATE INDEX IF NOT EXISTS tlsrpt_reports_end ON tlsrpt_reports (end_time);

CREATE TABLE IF NOT EXISTS tlsrpt_policies (
    report_id     TEXT NOT NULL,
    idx           BIGINT NOT NULL,      -- position in "policies"
    policy_type   TEXT NOT NULL,
    domain        TEXT,                  -- "policy-domain", lowercased; NULL when absent
    policy_string TEXT,                  -- lines joined with "\n"; NULL when absent
    policy_id     TEXT,                  -- the id we served, as matched; NULL when unknown
    day           TEXT NOT NULL,         -- UTC date of the report's start, YYYY-MM-DD
    successful    BIGINT NOT NULL,
    failed        BIGINT NOT NULL,
    PRIMARY KEY (report_id, idx)
);
CREATE INDEX IF NOT EXISTS tlsrpt_policies_domain_day ON tlsrpt_policies (domain, day);

CREATE TABLE IF NOT EXISTS tlsrpt_failures (
    report_id    TEXT NOT NULL,
    idx          BIGINT NOT NULL,       -- the policy's position
    n            BIGINT NOT NULL,       -- position in "failure-details"
    result_type  TEXT NOT NULL,
    receiving_mx TEXT,
    sending_ip   TEXT,
    receiving_ip TEXT,
    reason       TEXT,
    count        BIGINT NOT NULL,
    PRIMARY KEY (report_id, idx, n)
);
