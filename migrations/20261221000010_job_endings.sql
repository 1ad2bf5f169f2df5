-- Jobs that ended, by how they ended, counted for good (`/metrics`'
-- `price_history_jobs_ended_total`). `price_history_jobs{status="failed"}` is how many
-- failed jobs are kept: it falls when retention deletes old ones (JOB_RETENTION_DAYS),
-- so an alert on its rise missed a failure that landed beside such a deletion. This
-- count only grows: a row of 1 is appended for each job inserted already ended or whose
-- status turns into an end; deleting jobs appends nothing. As `job_status_deltas`, only
-- appends (no row is locked), summed by /metrics and folded into one row per status by
-- retention's task. Only additions.
CREATE TABLE job_endings (status VARCHAR(30) NOT NULL, delta BIGINT NOT NULL);

CREATE FUNCTION ingestion_jobs_count_ending() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status THEN
        INSERT INTO job_endings (status, delta) VALUES (NEW.status, 1);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ingestion_jobs_count_ending AFTER INSERT OR UPDATE OF status ON ingestion_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'completed_with_gaps', 'failed', 'cancelled'))
    EXECUTE FUNCTION ingestion_jobs_count_ending();

-- The jobs an earlier release ended, counted once.
INSERT INTO job_endings (status, delta)
SELECT status, count(*) FROM ingestion_jobs
WHERE status IN ('completed', 'completed_with_gaps', 'failed', 'cancelled')
GROUP BY status;
