-- The coin registry: every symbol the service fetches, and CoinGecko's id for it.
-- Bitcoin was the only coin of earlier releases; it is registered here, so that the rows
-- and jobs those releases wrote keep their meaning.
CREATE TABLE coins (
    symbol       TEXT        PRIMARY KEY
        CONSTRAINT coins_symbol_is_a_ticker CHECK (symbol ~ '^[A-Z0-9]{1,15}$'),
    coingecko_id TEXT        NOT NULL UNIQUE
        CONSTRAINT coins_coingecko_id_is_url_safe CHECK (coingecko_id ~ '^[a-z0-9._-]{1,100}$'),
    -- The first UTC day CoinGecko has a price for; NULL when the check could not see that
    -- far back (the coin is older than the plan's reach).
    first_day    DATE,
    -- Kept up to date by the schedule (SYNC_SCHEDULE), from track_since when set.
    tracked      BOOLEAN     NOT NULL DEFAULT FALSE,
    track_since  DATE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO coins (symbol, coingecko_id, first_day) VALUES ('BTC', 'bitcoin', '2013-04-28');

-- Prices and jobs belong to a registered coin.
ALTER TABLE daily_prices
    ADD CONSTRAINT daily_prices_symbol_is_registered FOREIGN KEY (symbol) REFERENCES coins (symbol);
ALTER TABLE ingestion_jobs
    ADD CONSTRAINT ingestion_jobs_symbol_is_registered FOREIGN KEY (symbol) REFERENCES coins (symbol);

-- Who asked for the job. Earlier releases recorded no trigger; their jobs read 'api'.
ALTER TABLE ingestion_jobs
    ADD COLUMN trigger TEXT NOT NULL DEFAULT 'api'
        CONSTRAINT ingestion_jobs_trigger_is_known CHECK (trigger IN ('api', 'cli', 'schedule'));

-- Days of the range older than the plan's reach (COINGECKO_HISTORY_DAYS, or learned from
-- CoinGecko's 10012 answer): never asked for, not counted as gaps.
ALTER TABLE ingestion_jobs ADD COLUMN out_of_plan_days INTEGER NOT NULL DEFAULT 0;

-- One active job per coin instead of one in all: jobs of different coins may run at once.
-- The new index is built before the old one goes, so the rule holds throughout.
CREATE UNIQUE INDEX ingestion_jobs_one_active_per_symbol
    ON ingestion_jobs (symbol)
    WHERE status IN ('pending', 'running');
DROP INDEX ingestion_jobs_one_active;

-- How far back a CoinGecko plan serves, learned from its 10012 answer ("past 365 days
-- only"), so that later jobs spend no call on days it refuses. Keyed by the API root and
-- a fingerprint of the key (a SHA-256 prefix, never the key): a new key forgets it.
CREATE TABLE coingecko_plan_reach (
    base_url        TEXT        NOT NULL,
    key_fingerprint TEXT        NOT NULL,
    history_days    INTEGER     NOT NULL CHECK (history_days > 0),
    learned_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (base_url, key_fingerprint)
);
