-- The ledger's tables (DESIGN.md §6). The same file runs on PostgreSQL and SQLite, so it keeps to
-- what both read alike: TEXT ids (ULIDs, or the app backend's account ids), BIGINT Unix
-- milliseconds for every instant, and BIGINT 0/1 for flags. Not BOOLEAN: sqlx's `Any` driver,
-- which serves both databases through one pool, refuses SQLite's BOOLEAN columns.

-- One row per account of the app. The personal fields are the ones the privacy policy lists;
-- they are cleared (the row becomes a tombstone) when the account is purged, so in-flight work
-- can still learn that the account is gone.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    terminated_at BIGINT,
    -- ISO date (YYYY-MM-DD) when the app knows it; the age checks use `under_14`.
    birth_date TEXT,
    under_14 BIGINT NOT NULL DEFAULT 0 CHECK (under_14 IN (0, 1)),
    legal_hold BIGINT NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1)),
    erasure_requested_at BIGINT,
    tombstoned_at BIGINT,
    email TEXT,
    username TEXT,
    password_hash TEXT,
    name TEXT,
    gender TEXT,
    phone TEXT,
    third_party_login TEXT
);

CREATE INDEX accounts_terminated_at ON accounts (terminated_at);

-- One row per generation job. `status_key` and `error_key` order the job's events so that the
-- ledger reaches the same row whatever order events arrive in (see src/events.rs).
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    pool TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'expired', 'cancelled')),
    status_key BIGINT NOT NULL,
    submitted_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    progress_pct BIGINT CHECK (progress_pct BETWEEN 0 AND 100),
    progress_at BIGINT,
    input_key TEXT NOT NULL,
    input_deleted_at BIGINT,
    output_key TEXT,
    output_size BIGINT,
    output_expires_at BIGINT,
    output_deleted_at BIGINT,
    error_code TEXT,
    error_message TEXT,
    error_key BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    request_hash TEXT,
    UNIQUE (account_id, idempotency_key)
);

CREATE INDEX jobs_output_expires_at ON jobs (output_expires_at);
CREATE INDEX jobs_submitted_at ON jobs (submitted_at);
CREATE INDEX jobs_status ON jobs (status);

-- The distinct `started` events of a job: counting them gives `attempts`, and a redelivered
-- event finds its row already there.
CREATE TABLE job_attempts (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    started_at BIGINT NOT NULL,
    worker TEXT NOT NULL,
    PRIMARY KEY (job_id, started_at, worker)
);

-- The policy's usage details, one row per request; the janitor expires them.
CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    account_id TEXT REFERENCES accounts (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    ip TEXT NOT NULL,
    device_id TEXT,
    action TEXT NOT NULL
);

CREATE INDEX usage_records_at ON usage_records (at);
CREATE INDEX usage_records_account_id ON usage_records (account_id);

-- The deletion audit: what was deleted, why, when, by whom, and whether it was verified gone.
-- Never the content. No foreign keys: the audit outlives what it records.
CREATE TABLE deletions (
    id TEXT PRIMARY KEY,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('account', 'job', 'usage', 'session')),
    subject_id TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    verified BIGINT NOT NULL CHECK (verified IN (0, 1))
);

CREATE INDEX deletions_at ON deletions (at);
CREATE INDEX deletions_subject ON deletions (subject_kind, subject_id);
