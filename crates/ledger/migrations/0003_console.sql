-- What the operator console reads beyond 0002.

-- One row per janitor sweep, for the console: when, how long, what each rule deleted.
-- Counts only (`rule=count;…`), never a key or an id. The janitor drops rows older than a week
-- as it writes a new one.
CREATE TABLE janitor_sweeps (
    id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    took_ms BIGINT NOT NULL,
    deleted TEXT NOT NULL,
    accounts_purged BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    recovered BIGINT NOT NULL
);

CREATE INDEX janitor_sweeps_started_at ON janitor_sweeps (started_at);

-- The console's throughput and latency plots read jobs by when they ended.
CREATE INDEX jobs_finished_at ON jobs (finished_at);

-- The stage timings a worker reports with `succeeded` (queue wait, fetch, batch wait, infer,
-- encode, store, in ms, as `stage=ms;…`), for the console's job page.
ALTER TABLE jobs ADD COLUMN stages TEXT;
