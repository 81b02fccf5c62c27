-- Personalisation sessions (the same file on PostgreSQL and SQLite): an account's temporary
-- session, the photos uploaded to it, and which jobs belong to one.

-- One row per session. It ends once (`ended_at`, the first end wins): deleted on request, past
-- its TTL, or with its account's erasure; `objects_deleted_at` records that everything under
-- `sessions/<account>/<session>/` but the `ended` marker was verified gone.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT CHECK (end_reason IN ('deleted', 'expired', 'account_erased')),
    objects_deleted_at BIGINT
);

CREATE INDEX sessions_account_id ON sessions (account_id);

-- The photos of an open session: what a `personalize` job trains on (digests, to check them
-- after unsealing). `personalize_job` is the job that took the photo; NULL while unclaimed.
-- The rows go when the session ends: they are of no use after, and they hold digests.
CREATE TABLE session_photos (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    personalize_job TEXT,
    PRIMARY KEY (session_id, id)
);

-- What a job makes when it is not what its model makes: 'personalize' for a session's
-- training job (NULL: the model's own kind, video or image).
ALTER TABLE jobs ADD COLUMN kind TEXT CHECK (kind IN ('video', 'image', 'personalize'));
-- The session a job belongs to (a training job, or a job rendered with the session's adapter).
-- No foreign key: a job row outlives its session's rows until the account's purge.
ALTER TABLE jobs ADD COLUMN session_id TEXT;
CREATE INDEX jobs_session_id ON jobs (session_id, submitted_at) WHERE session_id IS NOT NULL;
