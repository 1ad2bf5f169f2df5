-- The second source (issue 19): Coinbase Exchange's public daily candles fill the days
-- older than the CoinGecko plan's reach. Only additions: a database of an earlier release
-- keeps every row, and every row it has is CoinGecko's.

-- Where each stored day came from. Rows of earlier releases are CoinGecko's.
ALTER TABLE daily_prices
    ADD COLUMN source TEXT NOT NULL DEFAULT 'coingecko'
        CONSTRAINT daily_prices_source_is_known CHECK (source IN ('coingecko', 'coinbase'));

-- A coin's product on Coinbase Exchange (`BTC-USD`), and what checking it found.
ALTER TABLE coins
    -- NULL: no second source for the coin (Coinbase does not list it, or it was cleared).
    ADD COLUMN coinbase_product TEXT
        CONSTRAINT coins_coinbase_product_is_a_product
            CHECK (coinbase_product ~ '^[A-Z0-9]{1,15}-[A-Z0-9]{1,15}$'),
    -- The median relative difference, in percent, of the two sources' closes on up to 30
    -- days both cover; NULL until the mapping has been checked.
    ADD COLUMN fallback_deviation_percent NUMERIC
        CONSTRAINT coins_fallback_deviation_not_negative CHECK (fallback_deviation_percent >= 0),
    -- When the mapping was checked, and what came of it: NULL until then; FALSE with the
    -- reason when the second source must not be used for the coin (a ticker that names
    -- another asset, or no day both sources cover).
    ADD COLUMN fallback_checked_at TIMESTAMPTZ,
    ADD COLUMN fallback_usable BOOLEAN,
    ADD COLUMN fallback_unusable_reason TEXT
        CONSTRAINT coins_fallback_reason_is_short CHECK (length(fallback_unusable_reason) <= 2000),
    -- The product has no candle before this day (learned from an answer that started
    -- later than asked), so no later job spends a call on the days before it.
    ADD COLUMN coinbase_candles_from DATE,
    ADD CONSTRAINT coins_fallback_checked_together
        CHECK ((fallback_usable IS NULL) = (fallback_checked_at IS NULL));

-- Bitcoin, registered by the first migration, trades on Coinbase as BTC-USD.
UPDATE coins SET coinbase_product = 'BTC-USD' WHERE symbol = 'BTC' AND coingecko_id = 'bitcoin';

-- The days a job stored from the second source.
ALTER TABLE ingestion_jobs
    ADD COLUMN fallback_days INTEGER NOT NULL DEFAULT 0
        CONSTRAINT ingestion_jobs_fallback_days_not_negative CHECK (fallback_days >= 0);

-- One call budget per source: Coinbase's (COINBASE_CALLS_PER_MINUTE) is kept beside
-- CoinGecko's, by the same GCRA in the same table (its name is historical), one row per
-- source and key fingerprint (`none` for a keyless source).
ALTER TABLE coingecko_call_budget
    ADD COLUMN source TEXT NOT NULL DEFAULT 'coingecko'
        CONSTRAINT coingecko_call_budget_source_is_known CHECK (source IN ('coingecko', 'coinbase'));
ALTER TABLE coingecko_call_budget DROP CONSTRAINT coingecko_call_budget_pkey;
ALTER TABLE coingecko_call_budget ADD PRIMARY KEY (source, key_fingerprint);
