-- What the janitor needs beyond 0001 (the same file on PostgreSQL and SQLite).

-- The audit as a write-ahead log: the janitor records a deletion (verified = 0) before it
-- deletes, and marks it verified once a check finds the thing gone. `dedup_key` (rule, subject
-- and target) makes the record idempotent: a sweep rerun after a crash finds its row instead of
-- writing a second one. NULL for rows written without one (NULLs never collide).
ALTER TABLE deletions ADD COLUMN dedup_key TEXT;
-- How many rows a deletion of table rows removed (an account's jobs, expired usage records):
-- the count proves the deletion without keeping what was deleted.
ALTER TABLE deletions ADD COLUMN row_count BIGINT;
CREATE UNIQUE INDEX deletions_dedup_key ON deletions (dedup_key);
CREATE INDEX deletions_unverified ON deletions (at) WHERE verified = 0;

-- The janitor's sweeps read only jobs whose photo or video is still recorded as present: a
-- small set in a large table once most jobs are done.
CREATE INDEX jobs_input_present ON jobs (submitted_at, id) WHERE input_deleted_at IS NULL;
CREATE INDEX jobs_output_present ON jobs (output_expires_at, id)
    WHERE output_key IS NOT NULL AND output_deleted_at IS NULL;
