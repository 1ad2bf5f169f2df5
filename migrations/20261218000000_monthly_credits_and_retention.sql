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
