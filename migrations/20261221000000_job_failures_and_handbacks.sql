-- Why a job was started again, counted apart. `attempts` counts every start; a job
-- handed back at shutdown (every rolling deploy) or taken over after a crash was started
-- again without failing, yet each start counted against `JOB_MAX_ATTEMPTS`: three deploys
-- during a long job, and its first CoinGecko 503 failed it for good. The worker's policy
-- now gives up after `JOB_MAX_ATTEMPTS` *failures*, and its guard against a job that
-- kills its worker leaves the hand-backs out.
ALTER TABLE ingestion_jobs ADD COLUMN IF NOT EXISTS failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingestion_jobs ADD COLUMN IF NOT EXISTS handbacks INTEGER NOT NULL DEFAULT 0;

-- The queue's own count (`apalis.jobs.attempts`, hand-backs included) no longer decides
-- either: an entry's `max_attempts` was `JOB_MAX_ATTEMPTS`, past which apalis-postgres
-- never fetches a failed entry again, and its record, told "will be retried", waited
-- pending for good. Entries are now queued with the largest limit, and those an earlier
-- release queued are given it. (An entry of a job that has ended is fetched once more and
-- ends at once: the worker finds its record no longer active.)
UPDATE apalis.jobs SET max_attempts = 2147483647
WHERE job_type = 'price-history::ingest'
  AND status IN ('Pending', 'Queued', 'Running', 'Failed');
