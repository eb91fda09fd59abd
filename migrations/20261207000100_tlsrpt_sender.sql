-- TLS-RPT reports keyed by sender and report-id (issue 23: an unauthenticated POST with a
-- predictable id pre-empted the DKIM-verified mail report of the same id), with how each was
-- authenticated and its size (the store's byte quota). Portable SQL (SQLite and PostgreSQL):
-- new tables filled from the old ones, which are then dropped and replaced; rows are kept.
--
-- sender: "dkim:<d= of the verified signature>" for mail, "https:<organization-name>" for
-- HTTPS (which authenticates nobody). Reports stored before this migration: mail ones were
-- DKIM-verified but the signer was not kept ("dkim:"); HTTPS ones as above.

CREATE TABLE tlsrpt_reports_v2 (
    sender       TEXT NOT NULL,
    report_id    TEXT NOT NULL,          -- RFC 8460 §4.4 "report-id": unique per sender
    organization TEXT NOT NULL,
    contact      TEXT,
    start_time   BIGINT NOT NULL,        -- unix seconds, UTC
    end_time     BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    source       TEXT NOT NULL,          -- "https" or "mail"
    auth         TEXT NOT NULL,          -- "dkim" (mail, verified) or "none" (HTTPS)
    signer       TEXT,                   -- the DKIM d= domain; NULL when not known
    bytes        BIGINT NOT NULL,        -- the JSON's length, for the store's quota
    json         TEXT NOT NULL,          -- the report as received (decompressed)
    PRIMARY KEY (sender, report_id)
);

CREATE TABLE tlsrpt_policies_v2 (
    sender        TEXT NOT NULL,
    report_id     TEXT NOT NULL,
    idx           BIGINT NOT NULL,      -- position in "policies"
    policy_type   TEXT NOT NULL,
    domain        TEXT,                  -- "policy-domain", lowercased; NULL when absent
    policy_string TEXT,                  -- lines joined with "\n"; NULL when absent
    policy_id     TEXT,                  -- the id we served, as matched; NULL when unknown
    day           TEXT NOT NULL,         -- UTC date of the report's start, YYYY-MM-DD
    successful    BIGINT NOT NULL,       -- capped (see MAX_COUNT in src/tlsrpt/store)
    failed        BIGINT NOT NULL,
    PRIMARY KEY (sender, report_id, idx)
);

CREATE TABLE tlsrpt_failures_v2 (
    sender       TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    idx          BIGINT NOT NULL,       -- the policy's position
    n            BIGINT NOT NULL,       -- position in "failure-details"
    result_type  TEXT NOT NULL,
    receiving_mx TEXT,
    sending_ip   TEXT,
    receiving_ip TEXT,
    reason       TEXT,
    count        BIGINT NOT NULL,
    PRIMARY KEY (sender, report_id, idx, n)
);

INSERT INTO tlsrpt_reports_v2 (sender, report_id, organization, contact, start_time, end_time,
    received_at, source, auth, signer, bytes, json)
SELECT CASE WHEN source = 'mail' THEN 'dkim:' ELSE 'https:' || organization END,
    report_id, organization, contact, start_time, end_time, received_at, source,
    CASE WHEN source = 'mail' THEN 'dkim' ELSE 'none' END, NULL, LENGTH(json), json
FROM tlsrpt_reports;

-- The old report_id was unique across senders, so each row has one report.
INSERT INTO tlsrpt_policies_v2 (sender, report_id, idx, policy_type, domain, policy_string,
    policy_id, day, successful, failed)
SELECT r.sender, p.report_id, p.idx, p.policy_type, p.domain, p.policy_string, p.policy_id,
    p.day, p.successful, p.failed
FROM tlsrpt_policies p JOIN tlsrpt_reports_v2 r ON r.report_id = p.report_id;

INSERT INTO tlsrpt_failures_v2 (sender, report_id, idx, n, result_type, receiving_mx,
    sending_ip, receiving_ip, reason, count)
SELECT r.sender, f.report_id, f.idx, f.n, f.result_type, f.receiving_mx, f.sending_ip,
    f.receiving_ip, f.reason, f.count
FROM tlsrpt_failures f JOIN tlsrpt_reports_v2 r ON r.report_id = f.report_id;

DROP TABLE tlsrpt_failures;
DROP TABLE tlsrpt_policies;
DROP TABLE tlsrpt_reports;
ALTER TABLE tlsrpt_reports_v2 RENAME TO tlsrpt_reports;
ALTER TABLE tlsrpt_policies_v2 RENAME TO tlsrpt_policies;
ALTER TABLE tlsrpt_failures_v2 RENAME TO tlsrpt_failures;

CREATE INDEX tlsrpt_reports_end ON tlsrpt_reports (end_time);
CREATE INDEX tlsrpt_reports_received ON tlsrpt_reports (received_at);
CREATE INDEX tlsrpt_policies_domain_day ON tlsrpt_policies (domain, day);
