-- The oracle's evidence lookups (and the guardian's receipts-of-a-type reads) by scroll and
-- receipt type, newest first: each (scroll, type) pair is one bounded backward index scan
-- instead of a scan of the scroll's receipts. No new rights: indexes need no grants.
--
-- On a large ledger, build the index beforehand without blocking writes
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS receipts_scroll_type_time
--       ON receipts (scroll_id, type, submitted_at, seq);
-- and this migration finds it already there.
CREATE INDEX IF NOT EXISTS receipts_scroll_type_time
    ON receipts (scroll_id, type, submitted_at, seq);
