-- Hours, not just days (issue 26): hourly candles beside the daily ones. Only additions:
-- a database of an earlier release keeps every row and every job, and gains empty tables,
-- coins that keep no hours (`hourly` false) and jobs without hour counts (NULL).
--
-- Every hour is a UTC hour, stored as the timestamptz it starts at and kept on the grid by
-- a constraint that reads no time zone (seconds since 1970, a multiple of 3600). Every key
-- and every hot query starts with the coin (`symbol`), so that the tables can later be
-- distributed by coin over several machines (Citus: `create_distributed_table(..., 'symbol')`
-- with `coins` as a reference table) without a rewrite.

-- One row per coin and UTC hour: Coinbase Exchange's true hourly candle, or, for a coin with
-- no usable product, a candle built from CoinGecko's price points of the hour.
CREATE TABLE hourly_prices (
    symbol      TEXT        NOT NULL
        CONSTRAINT hourly_prices_symbol_is_registered REFERENCES coins (symbol),
    -- The hour's start.
    hour        TIMESTAMPTZ NOT NULL
        CONSTRAINT hourly_prices_hour_on_the_grid CHECK (extract(epoch FROM hour) % 3600 = 0),
    -- Prices in USD, as in daily_prices. NUMERIC keeps every digit the source sent, and for
    -- exchange prices (2 to 6 decimals) it is smaller than float8: measured on 3.5 M rows,
    -- 127 bytes a row against 134 with the five prices and volume as float8.
    open        NUMERIC     NOT NULL,
    high        NUMERIC     NOT NULL,
    low         NUMERIC     NOT NULL,
    close       NUMERIC     NOT NULL,
    -- In USD: an exchange candle's base volume times its close; a CoinGecko-built hour's
    -- last 24-hour market volume of the hour divided by 24 (its share of the day). `source`
    -- says which of the two a row holds.
    volume      NUMERIC     NOT NULL,
    source      TEXT        NOT NULL
        CONSTRAINT hourly_prices_source_is_known CHECK (source IN ('coinbase', 'coingecko')),
    -- How many CoinGecko points a CoinGecko-built hour was made from; NULL for an exchange
    -- candle, which is a candle of its own.
    points      INTEGER,
    -- The hour was not over when it was fetched: it counts as missing until replaced.
    provisional BOOLEAN     NOT NULL DEFAULT FALSE,
    -- The hour-by-hour check, beside an exchange candle only: CoinGecko's first price point
    -- inside the hour, when it was sampled, and how far it lies outside the candle's
    -- low-high band in percent of the edge it passed (0 inside). All NULL when no point
    -- could check the candle.
    check_price             NUMERIC,
    check_at                TIMESTAMPTZ,
    check_deviation_percent NUMERIC,
    -- The point lay outside the band by more than FALLBACK_MAX_DEVIATION_PERCENT when checked.
    disputed    BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, hour),
    CONSTRAINT hourly_prices_candle_is_consistent
        CHECK (low <= open AND low <= close AND high >= open AND high >= close AND low <= high),
    CONSTRAINT hourly_prices_prices_positive CHECK (open > 0 AND high > 0 AND low > 0 AND close > 0),
    CONSTRAINT hourly_prices_volume_not_negative CHECK (volume >= 0),
    CONSTRAINT hourly_prices_points_say_how_it_was_built
        CHECK ((source = 'coingecko') = (points IS NOT NULL) AND (points IS NULL OR points >= 1)),
    CONSTRAINT hourly_prices_check_is_whole
        CHECK ((check_price IS NULL) = (check_at IS NULL)
               AND (check_price IS NULL) = (check_deviation_percent IS NULL)),
    CONSTRAINT hourly_prices_check_beside_an_exchange_candle
        CHECK (check_price IS NULL
               OR (source = 'coinbase' AND check_price > 0 AND check_deviation_percent >= 0
                   AND check_at >= hour AND check_at < hour + interval '1 hour')),
    CONSTRAINT hourly_prices_disputed_only_when_checked
        CHECK (NOT disputed OR coalesce(check_deviation_percent, 0) > 0)
);

-- Hours the coin's exchange product published no candle for (no trades), learned from an
-- answer that covered them once they were over. Such an hour is never missing and never
-- costs a call again. One row per hour rather than runs: an hour is then stored, without
-- trades or missing by a key lookup alone; a candle that does come later (a forced job)
-- deletes its hour's row in the statement that stores it; and a row weighs about a third
-- of a candle's, so these rows can never outweigh the candles they stand in for. They are
-- the product's: forgotten when the product changes or is judged unusable (below).
CREATE TABLE hours_without_trades (
    symbol TEXT        NOT NULL
        CONSTRAINT hours_without_trades_symbol_is_registered REFERENCES coins (symbol),
    hour   TIMESTAMPTZ NOT NULL
        CONSTRAINT hours_without_trades_hour_on_the_grid CHECK (extract(epoch FROM hour) % 3600 = 0),
    PRIMARY KEY (symbol, hour)
);

ALTER TABLE coins
    -- The coin keeps hourly candles (`PUT`, `coins add --hourly`, `track-top --hourly`, the
    -- page). Off by default: daily-only coins cost nothing.
    ADD COLUMN hourly BOOLEAN NOT NULL DEFAULT FALSE,
    -- The product has no hourly candle before this hour (learned from an answer that began
    -- later than asked), so no job spends a call on the hours before it.
    ADD COLUMN coinbase_hours_from TIMESTAMPTZ
        CONSTRAINT coins_coinbase_hours_from_on_the_grid
            CHECK (extract(epoch FROM coinbase_hours_from) % 3600 = 0);

-- What a product taught about hours (where its candles begin, which hours had no trades)
-- is the product's: when the coin's product changes, or its check finds it unusable, it is
-- forgotten, whichever statement makes the change, so that the next product's hours are
-- asked for. Candles already stored stay, as days do.
CREATE FUNCTION coins_forget_product_hours() RETURNS trigger AS $$
BEGIN
    IF OLD.coinbase_product IS DISTINCT FROM NEW.coinbase_product
       OR (OLD.fallback_usable IS TRUE AND NEW.fallback_usable IS NOT TRUE) THEN
        NEW.coinbase_hours_from := NULL;
        DELETE FROM hours_without_trades WHERE symbol = NEW.symbol;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER coins_forget_product_hours
    BEFORE UPDATE OF coinbase_product, fallback_usable ON coins
    FOR EACH ROW EXECUTE FUNCTION coins_forget_product_hours();

-- A job of an hourly coin counts its hours: those it stored, those of its range still
-- missing when it ended, and those of its range recorded as without trades. NULL for a
-- job of a daily-only coin (and for every job of an earlier release).
ALTER TABLE ingestion_jobs
    ADD COLUMN hours_fetched INTEGER
        CONSTRAINT ingestion_jobs_hours_fetched_not_negative CHECK (hours_fetched >= 0),
    ADD COLUMN hours_missing INTEGER
        CONSTRAINT ingestion_jobs_hours_missing_not_negative CHECK (hours_missing >= 0),
    ADD COLUMN hours_without_trades INTEGER
        CONSTRAINT ingestion_jobs_hours_without_trades_not_negative CHECK (hours_without_trades >= 0),
    ADD CONSTRAINT ingestion_jobs_hours_counted_together
        CHECK ((hours_fetched IS NULL) = (hours_missing IS NULL)
               AND (hours_fetched IS NULL) = (hours_without_trades IS NULL));
