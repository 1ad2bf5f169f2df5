-- A year on a Demo key (issue 28): monthly credits counted over every process, ticks that
-- say which coins they could not afford, and an index for deleting old finished jobs.
-- Only additions.

-- The CoinGecko calls of each UTC calendar month, per source and key, over every process
-- (COINGECKO_CALLS_PER_MONTH). Each attempt takes one credit with one statement,
--   INSERT ... ON CONFLICT DO UPDATE SET used = used + 1 WHERE used < limit RETURNING used,
-- whose row lock orders racing processes: no row back means the month is spent, and no
-- two processes can both take the last credit. Logged (unlike the per-minute budget's
-- table): credits spent must survive a crash of PostgreSQL, or a month could be spent twice.
-- `month` is the first day of the month, by the clock of the process that called.
CREATE TABLE monthly_credits (
    source          TEXT    NOT NULL
        CONSTRAINT monthly_credits_source_is_known CHECK (source IN ('coingecko', 'coinbase')),
    -- A SHA-256 prefix of the key (`none` without one); never the key itself.
    key_fingerprint TEXT    NOT NULL,
    month           DATE    NOT NULL
        CONSTRAINT monthly_credits_month_is_its_first_day CHECK (extract(day FROM month) = 1),
    used            BIGINT  NOT NULL DEFAULT 0 CONSTRAINT monthly_credits_used_not_negative CHECK (used >= 0),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, key_fingerprint, month)
);

-- Tracked coins a tick left for next month because the month's credits could not pay for
-- them (0 for ticks of earlier releases).
ALTER TABLE sync_ticks ADD COLUMN coins_unaffordable INTEGER NOT NULL DEFAULT 0;

-- Retention (JOB_RETENTION_DAYS) deletes finished jobs oldest first, a small batch at a
-- time: this index finds each batch without reading the active jobs or the whole table.
CREATE INDEX ingestion_jobs_finished_at ON ingestion_jobs (completed_at)
    WHERE status IN ('completed', 'completed_with_gaps', 'failed', 'cancelled');

-- Jobs by status for /metrics without counting a year of finished jobs at every scrape:
-- each statement that inserts, deletes or changes the status of jobs appends what it
-- changed, per status, to this table (statement triggers, so plain SQL counts too). Only
-- appends: no row is locked, so no job's transaction waits on another's. /metrics sums it;
-- retention's task folds it into one row per status now and then
-- (`store::stats::compact_job_counts`), so it stays a handful of rows.
CREATE TABLE job_status_deltas (
    status VARCHAR(30) NOT NULL,
    delta  BIGINT      NOT NULL
);

CREATE FUNCTION ingestion_jobs_count_statuses() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_status_deltas (status, delta)
        SELECT status, count(*) FROM new_rows GROUP BY status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_status_deltas (status, delta)
        SELECT status, -count(*) FROM old_rows GROUP BY status;
    ELSE
        INSERT INTO job_status_deltas (status, delta)
        SELECT status, sum(d) FROM (
            SELECT n.status, 1 AS d FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status <> o.status
            UNION ALL
            SELECT o.status, -1 FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status <> o.status
        ) AS changed
        GROUP BY status;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ingestion_jobs_count_inserted AFTER INSERT ON ingestion_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ingestion_jobs_count_statuses();
CREATE TRIGGER ingestion_jobs_count_updated AFTER UPDATE ON ingestion_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ingestion_jobs_count_statuses();
CREATE TRIGGER ingestion_jobs_count_deleted AFTER DELETE ON ingestion_jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ingestion_jobs_count_statuses();

-- The jobs of an earlier release, counted once.
INSERT INTO job_status_deltas (status, delta)
SELECT status, count(*) FROM ingestion_jobs GROUP BY status;
