-- Whom each id-history event is about, so that one domain's history is an indexed query
-- (`mta-stsd history DOMAIN` on a store of a million domains) rather than a read of every
-- row. Portable SQL, as 20261207000200. The domain for a domain's events, `policy:<id>` for
-- a policy body; '' for a row that does not parse. Rows written before this column are
-- filled in by `serve` in the background (the JSON is read by the program, not by SQL, whose
-- JSON functions differ between the engines); until then they are NULL and read as before.
ALTER TABLE store_history ADD COLUMN subject TEXT;
CREATE INDEX IF NOT EXISTS store_history_subject ON store_history (subject, seq);
