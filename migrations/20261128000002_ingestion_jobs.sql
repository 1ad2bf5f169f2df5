-- What each backfill was asked to do, how far it got and how it ended.
-- The queue itself lives in apalis's own schema; this table is the user-facing record.
CREATE TABLE IF NOT EXISTS ingestion_jobs (
    id               UUID          PRIMARY KEY,
    status           VARCHAR(30)   NOT NULL DEFAULT 'pending'
        CONSTRAINT ingestion_jobs_status_is_known
        CHECK (status IN ('pending', 'running', 'completed', 'completed_with_gaps', 'failed', 'cancelled')),
    symbol           TEXT          NOT NULL,
    start_date       DATE          NOT NULL,
    end_date         DATE          NOT NULL,
    force            BOOLEAN       NOT NULL DEFAULT FALSE,
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    records_fetched  INTEGER       NOT NULL DEFAULT 0,
    gaps_detected    INTEGER       NOT NULL DEFAULT 0,
    gap_dates        DATE[]        NOT NULL DEFAULT '{}',
    error_message    VARCHAR(2000),
    attempts         INTEGER       NOT NULL DEFAULT 0,
    chunks_done      INTEGER       NOT NULL DEFAULT 0,
    chunks_total     INTEGER       NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    CONSTRAINT ingestion_jobs_range_is_ordered CHECK (start_date <= end_date)
);

CREATE INDEX IF NOT EXISTS ingestion_jobs_status_idx ON ingestion_jobs (status);
CREATE INDEX IF NOT EXISTS ingestion_jobs_created_at_idx ON ingestion_jobs (created_at DESC);

-- At most one job may be pending or running, across every process sharing the database:
-- a unique index over a constant, limited to the active rows.
CREATE UNIQUE INDEX IF NOT EXISTS ingestion_jobs_one_active
    ON ingestion_jobs ((TRUE))
    WHERE status IN ('pending', 'running');

-- Every change of a job is announced on channel `ingestion_jobs` with the job's id, so
-- that followers (the backfill command's progress bar, tests, the API) wait for events
-- instead of polling.
CREATE OR REPLACE FUNCTION ingestion_jobs_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ingestion_jobs', NEW.id::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS ingestion_jobs_notify ON ingestion_jobs;
CREATE TRIGGER ingestion_jobs_notify
    AFTER INSERT OR UPDATE ON ingestion_jobs
    FOR EACH ROW EXECUTE FUNCTION ingestion_jobs_notify();
