-- Per-coin hourly figures kept by the database itself, as coin_figures keeps the days
-- (issue 26): what a coin shows of its hours (`disputed_hours`,
-- `hourly_median_deviation_percent`), what /metrics counts and what the schedule needs to
-- tell whether a coin's hours are current, read from one row per coin, so that a list of
-- 10,000 coins costs the same however many hours each has stored.
--
-- Kept by statement-level triggers on hourly_prices and hours_without_trades, so they stay
-- true however the rows change: the service's upserts, an operator's DELETE, a restore,
-- rows loaded by plain SQL, TRUNCATE. One function per table serves INSERT, UPDATE and
-- DELETE: an update is its old rows gone and its new rows come.

-- One row per coin that has (or had) hours stored or recorded without trades. No foreign
-- key to coins, as for coin_figures: the rows it counts reference coins themselves.
CREATE TABLE hourly_figures (
    symbol               TEXT   PRIMARY KEY,
    -- Stored hours that are not provisional, and those that are.
    complete_hours       BIGINT NOT NULL DEFAULT 0 CONSTRAINT hourly_figures_complete_not_negative CHECK (complete_hours >= 0),
    provisional_hours    BIGINT NOT NULL DEFAULT 0 CONSTRAINT hourly_figures_provisional_not_negative CHECK (provisional_hours >= 0),
    -- Hours recorded as without trades.
    hours_without_trades BIGINT NOT NULL DEFAULT 0 CONSTRAINT hourly_figures_quiet_not_negative CHECK (hours_without_trades >= 0),
    -- The first and last hour accounted for: stored for good, or without trades. With the
    -- two counts they tell whether those hours are one unbroken run
    -- (complete_hours + hours_without_trades = hours from first to last), which spares a
    -- tick the gap query, as coin_figures does for days.
    first_hour           TIMESTAMPTZ,
    last_hour            TIMESTAMPTZ,
    -- Exchange candles with a CoinGecko point beside them; of those, the ones whose point
    -- lies outside the band at all, and the disputed ones.
    checked_hours        BIGINT NOT NULL DEFAULT 0 CONSTRAINT hourly_figures_checked_not_negative CHECK (checked_hours >= 0),
    outside_hours        BIGINT NOT NULL DEFAULT 0 CONSTRAINT hourly_figures_outside_not_negative CHECK (outside_hours >= 0),
    disputed_hours       BIGINT NOT NULL DEFAULT 0 CONSTRAINT hourly_figures_disputed_not_negative CHECK (disputed_hours >= 0),
    -- The median over the checked hours of the point's distance outside the band, in
    -- percent (0 inside), rounded to 4 places; NULL with no checked hour.
    median_deviation_percent NUMERIC
);

-- The first and last hour of `sym` stored for good or without trades, read from the two
-- tables' primary keys (one index probe each).
CREATE FUNCTION hourly_figures_first_hour(sym TEXT) RETURNS TIMESTAMPTZ AS $$
    SELECT least((SELECT min(hour) FROM hourly_prices WHERE symbol = sym AND NOT provisional),
                 (SELECT min(hour) FROM hours_without_trades WHERE symbol = sym));
$$ LANGUAGE sql STABLE;

CREATE FUNCTION hourly_figures_last_hour(sym TEXT) RETURNS TIMESTAMPTZ AS $$
    SELECT greatest((SELECT max(hour) FROM hourly_prices WHERE symbol = sym AND NOT provisional),
                    (SELECT max(hour) FROM hours_without_trades WHERE symbol = sym));
$$ LANGUAGE sql STABLE;

-- The exact median of `sym`'s check deviations: the middle one, or the mean of the two
-- middle ones, as the daily mapping check takes its median.
CREATE FUNCTION hourly_figures_median(sym TEXT) RETURNS NUMERIC AS $$
    WITH checked AS (
        SELECT check_deviation_percent AS d FROM hourly_prices
        WHERE symbol = sym AND check_deviation_percent IS NOT NULL
    ), n AS (SELECT count(*) AS n FROM checked)
    SELECT round(avg(d), 4) FROM (
        SELECT d FROM checked ORDER BY d
        OFFSET (SELECT (n - 1) / 2 FROM n) LIMIT (SELECT 2 - n % 2 FROM n)
    ) middle;
$$ LANGUAGE sql STABLE;

-- The median of the coins in `symbols`. When fewer than half of a coin's checked hours lie
-- outside the band at all, at least the middle one is 0, which the counts alone tell; only
-- otherwise (a coin whose candles mostly disagree with CoinGecko) are its hours read.
CREATE FUNCTION hourly_figures_refresh_median(symbols TEXT[]) RETURNS void AS $$
    UPDATE hourly_figures f SET median_deviation_percent = CASE
        WHEN f.checked_hours = 0 THEN NULL
        WHEN 2 * f.outside_hours < f.checked_hours THEN 0
        ELSE hourly_figures_median(f.symbol) END
    WHERE f.symbol = ANY (symbols);
$$ LANGUAGE sql;

-- Rows of hourly_prices gone (`gone`) and come (`came`): counts down and up, an extreme
-- that may have gone read again from the tables (as they are after the statement), and
-- the median of every coin whose checked hours changed.
CREATE FUNCTION hourly_figures_of_prices() RETURNS trigger AS $$
DECLARE
    rechecked TEXT[] := '{}';
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        WITH d AS (
            SELECT symbol,
                   count(*) FILTER (WHERE NOT provisional)                    AS complete,
                   count(*) FILTER (WHERE provisional)                        AS provisional,
                   count(*) FILTER (WHERE check_price IS NOT NULL)            AS checked,
                   count(*) FILTER (WHERE check_deviation_percent > 0)        AS outside,
                   count(*) FILTER (WHERE disputed)                           AS disputed,
                   min(hour) FILTER (WHERE NOT provisional)                   AS first_hour,
                   max(hour) FILTER (WHERE NOT provisional)                   AS last_hour
            FROM gone GROUP BY symbol
        )
        UPDATE hourly_figures f SET
            complete_hours    = f.complete_hours - d.complete,
            provisional_hours = f.provisional_hours - d.provisional,
            checked_hours     = f.checked_hours - d.checked,
            outside_hours     = f.outside_hours - d.outside,
            disputed_hours    = f.disputed_hours - d.disputed,
            first_hour = CASE WHEN f.first_hour >= d.first_hour
                              THEN hourly_figures_first_hour(f.symbol) ELSE f.first_hour END,
            last_hour  = CASE WHEN f.last_hour <= d.last_hour
                              THEN hourly_figures_last_hour(f.symbol) ELSE f.last_hour END
        FROM d WHERE f.symbol = d.symbol;
        SELECT rechecked || coalesce(array_agg(DISTINCT symbol), '{}') INTO rechecked
        FROM gone WHERE check_price IS NOT NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        -- Coins in symbol order, so that two bulk loads lock the figures' rows in one order.
        INSERT INTO hourly_figures AS f (symbol, complete_hours, provisional_hours, checked_hours,
                                         outside_hours, disputed_hours, first_hour, last_hour)
        SELECT symbol,
               count(*) FILTER (WHERE NOT provisional),
               count(*) FILTER (WHERE provisional),
               count(*) FILTER (WHERE check_price IS NOT NULL),
               count(*) FILTER (WHERE check_deviation_percent > 0),
               count(*) FILTER (WHERE disputed),
               min(hour) FILTER (WHERE NOT provisional),
               max(hour) FILTER (WHERE NOT provisional)
        FROM came GROUP BY symbol ORDER BY symbol
        ON CONFLICT (symbol) DO UPDATE SET
            complete_hours    = f.complete_hours + EXCLUDED.complete_hours,
            provisional_hours = f.provisional_hours + EXCLUDED.provisional_hours,
            checked_hours     = f.checked_hours + EXCLUDED.checked_hours,
            outside_hours     = f.outside_hours + EXCLUDED.outside_hours,
            disputed_hours    = f.disputed_hours + EXCLUDED.disputed_hours,
            -- least and greatest skip NULLs.
            first_hour        = least(f.first_hour, EXCLUDED.first_hour),
            last_hour         = greatest(f.last_hour, EXCLUDED.last_hour);
        SELECT rechecked || coalesce(array_agg(DISTINCT symbol), '{}') INTO rechecked
        FROM came WHERE check_price IS NOT NULL;
    END IF;
    IF cardinality(rechecked) > 0 THEN
        PERFORM hourly_figures_refresh_median(rechecked);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Rows of hours_without_trades gone and come: the same for the count of hours without
-- trades and the extremes.
CREATE FUNCTION hourly_figures_of_quiet_hours() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        WITH d AS (
            SELECT symbol, count(*) AS quiet, min(hour) AS first_hour, max(hour) AS last_hour
            FROM gone GROUP BY symbol
        )
        UPDATE hourly_figures f SET
            hours_without_trades = f.hours_without_trades - d.quiet,
            first_hour = CASE WHEN f.first_hour >= d.first_hour
                              THEN hourly_figures_first_hour(f.symbol) ELSE f.first_hour END,
            last_hour  = CASE WHEN f.last_hour <= d.last_hour
                              THEN hourly_figures_last_hour(f.symbol) ELSE f.last_hour END
        FROM d WHERE f.symbol = d.symbol;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO hourly_figures AS f (symbol, hours_without_trades, first_hour, last_hour)
        SELECT symbol, count(*), min(hour), max(hour)
        FROM came GROUP BY symbol ORDER BY symbol
        ON CONFLICT (symbol) DO UPDATE SET
            hours_without_trades = f.hours_without_trades + EXCLUDED.hours_without_trades,
            first_hour           = least(f.first_hour, EXCLUDED.first_hour),
            last_hour            = greatest(f.last_hour, EXCLUDED.last_hour);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- TRUNCATE has no rows to show: what the emptied table counted goes, and the extremes are
-- read again from the other table.
CREATE FUNCTION hourly_figures_truncate() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'hourly_prices' THEN
        UPDATE hourly_figures SET complete_hours = 0, provisional_hours = 0, checked_hours = 0,
                                  outside_hours = 0, disputed_hours = 0,
                                  median_deviation_percent = NULL;
    ELSE
        UPDATE hourly_figures SET hours_without_trades = 0;
    END IF;
    UPDATE hourly_figures SET first_hour = hourly_figures_first_hour(symbol),
                              last_hour = hourly_figures_last_hour(symbol);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Statement-level with transition tables: one pass per statement (a window's upsert, a
-- bulk load), not one per row. Transition tables allow one event per trigger, hence three
-- per table, all calling the one function.
CREATE TRIGGER hourly_figures_on_insert AFTER INSERT ON hourly_prices
    REFERENCING NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_of_prices();
CREATE TRIGGER hourly_figures_on_update AFTER UPDATE ON hourly_prices
    REFERENCING OLD TABLE AS gone NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_of_prices();
CREATE TRIGGER hourly_figures_on_delete AFTER DELETE ON hourly_prices
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_of_prices();
CREATE TRIGGER hourly_figures_on_truncate AFTER TRUNCATE ON hourly_prices
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_truncate();

CREATE TRIGGER hourly_figures_on_insert AFTER INSERT ON hours_without_trades
    REFERENCING NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_of_quiet_hours();
CREATE TRIGGER hourly_figures_on_update AFTER UPDATE ON hours_without_trades
    REFERENCING OLD TABLE AS gone NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_of_quiet_hours();
CREATE TRIGGER hourly_figures_on_delete AFTER DELETE ON hours_without_trades
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_of_quiet_hours();
CREATE TRIGGER hourly_figures_on_truncate AFTER TRUNCATE ON hours_without_trades
    FOR EACH STATEMENT EXECUTE FUNCTION hourly_figures_truncate();
