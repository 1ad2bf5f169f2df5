-- Per-coin figures kept by the database itself (issue 20): how many days each coin has
-- stored, complete and provisional, and where they begin and end, per source. The coin
-- list, /metrics and every tick of the schedule read these instead of scanning
-- daily_prices, so their cost does not grow with the history stored.
--
-- They are kept by statement-level triggers on daily_prices, so they stay true however
-- the rows change: the service's upserts, an operator's DELETE to have days fetched
-- again, a restored backup, rows loaded by plain SQL, TRUNCATE.

-- No writer may slip in between building the figures and creating the triggers.
LOCK TABLE daily_prices IN SHARE ROW EXCLUSIVE MODE;

-- One row per coin and source that has (or had) stored rows. No foreign key to coins: a
-- row exists only while daily_prices (which references coins) had rows of the symbol.
CREATE TABLE coin_figures (
    symbol             TEXT   NOT NULL,
    source             TEXT   NOT NULL,
    -- Stored days that are not provisional, and those that are.
    complete_days      BIGINT NOT NULL DEFAULT 0 CONSTRAINT coin_figures_complete_not_negative CHECK (complete_days >= 0),
    provisional_days   BIGINT NOT NULL DEFAULT 0 CONSTRAINT coin_figures_provisional_not_negative CHECK (provisional_days >= 0),
    -- The first stored day, provisional or not; NULL when none is stored.
    first_day          DATE,
    -- The first and the last stored day that is not provisional; NULL when none is.
    -- With complete_days they tell whether the complete days are one unbroken run
    -- (complete_days = last - first + 1), which is what spares a tick the gap query.
    first_complete_day DATE,
    last_complete_day  DATE,
    PRIMARY KEY (symbol, source)
);

INSERT INTO coin_figures (symbol, source, complete_days, provisional_days, first_day,
                          first_complete_day, last_complete_day)
SELECT symbol, source,
       count(*) FILTER (WHERE NOT provisional),
       count(*) FILTER (WHERE provisional),
       min(date),
       min(date) FILTER (WHERE NOT provisional),
       max(date) FILTER (WHERE NOT provisional)
FROM daily_prices
GROUP BY symbol, source;

-- Rows gone (deleted, or the old side of an update): counts go down; an extreme that
-- may have gone with them is read again from the table (one index probe), and only
-- then. Written against the transition table `gone`.
CREATE FUNCTION coin_figures_remove() RETURNS trigger AS $$
BEGIN
    WITH d AS (
        SELECT symbol, source,
               count(*) FILTER (WHERE NOT provisional) AS complete,
               count(*) FILTER (WHERE provisional)     AS provisional,
               min(date)                               AS first_day,
               min(date) FILTER (WHERE NOT provisional) AS first_complete,
               max(date) FILTER (WHERE NOT provisional) AS last_complete
        FROM gone GROUP BY symbol, source
    )
    UPDATE coin_figures f SET
        complete_days    = f.complete_days - d.complete,
        provisional_days = f.provisional_days - d.provisional,
        first_day = CASE WHEN f.first_day >= d.first_day
            THEN (SELECT min(p.date) FROM daily_prices p
                  WHERE p.symbol = f.symbol AND p.source = f.source)
            ELSE f.first_day END,
        first_complete_day = CASE WHEN f.first_complete_day >= d.first_complete
            THEN (SELECT min(p.date) FROM daily_prices p
                  WHERE p.symbol = f.symbol AND p.source = f.source AND NOT p.provisional)
            ELSE f.first_complete_day END,
        last_complete_day = CASE WHEN f.last_complete_day <= d.last_complete
            THEN (SELECT max(p.date) FROM daily_prices p
                  WHERE p.symbol = f.symbol AND p.source = f.source AND NOT p.provisional)
            ELSE f.last_complete_day END
    FROM d
    WHERE f.symbol = d.symbol AND f.source = d.source;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Rows come (inserted, or the new side of an update): counts go up, extremes widen.
-- Written against the transition table `came`; coins in symbol order, so that two bulk
-- loads lock the figures' rows in one order.
CREATE FUNCTION coin_figures_add() RETURNS trigger AS $$
BEGIN
    INSERT INTO coin_figures AS f (symbol, source, complete_days, provisional_days, first_day,
                                   first_complete_day, last_complete_day)
    SELECT symbol, source,
           count(*) FILTER (WHERE NOT provisional),
           count(*) FILTER (WHERE provisional),
           min(date),
           min(date) FILTER (WHERE NOT provisional),
           max(date) FILTER (WHERE NOT provisional)
    FROM came
    GROUP BY symbol, source
    ORDER BY symbol, source
    ON CONFLICT (symbol, source) DO UPDATE SET
        complete_days      = f.complete_days + EXCLUDED.complete_days,
        provisional_days   = f.provisional_days + EXCLUDED.provisional_days,
        -- least and greatest skip NULLs.
        first_day          = least(f.first_day, EXCLUDED.first_day),
        first_complete_day = least(f.first_complete_day, EXCLUDED.first_complete_day),
        last_complete_day  = greatest(f.last_complete_day, EXCLUDED.last_complete_day);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- An update is its old rows gone and its new rows come: the removal reads the table as
-- it is after the statement, so it finds the right extremes whatever the update moved.
CREATE FUNCTION coin_figures_update() RETURNS trigger AS $$
BEGIN
    WITH d AS (
        SELECT symbol, source,
               count(*) FILTER (WHERE NOT provisional) AS complete,
               count(*) FILTER (WHERE provisional)     AS provisional,
               min(date)                               AS first_day,
               min(date) FILTER (WHERE NOT provisional) AS first_complete,
               max(date) FILTER (WHERE NOT provisional) AS last_complete
        FROM gone GROUP BY symbol, source
    )
    UPDATE coin_figures f SET
        complete_days    = f.complete_days - d.complete,
        provisional_days = f.provisional_days - d.provisional,
        first_day = CASE WHEN f.first_day >= d.first_day
            THEN (SELECT min(p.date) FROM daily_prices p
                  WHERE p.symbol = f.symbol AND p.source = f.source)
            ELSE f.first_day END,
        first_complete_day = CASE WHEN f.first_complete_day >= d.first_complete
            THEN (SELECT min(p.date) FROM daily_prices p
                  WHERE p.symbol = f.symbol AND p.source = f.source AND NOT p.provisional)
            ELSE f.first_complete_day END,
        last_complete_day = CASE WHEN f.last_complete_day <= d.last_complete
            THEN (SELECT max(p.date) FROM daily_prices p
                  WHERE p.symbol = f.symbol AND p.source = f.source AND NOT p.provisional)
            ELSE f.last_complete_day END
    FROM d
    WHERE f.symbol = d.symbol AND f.source = d.source;

    INSERT INTO coin_figures AS f (symbol, source, complete_days, provisional_days, first_day,
                                   first_complete_day, last_complete_day)
    SELECT symbol, source,
           count(*) FILTER (WHERE NOT provisional),
           count(*) FILTER (WHERE provisional),
           min(date),
           min(date) FILTER (WHERE NOT provisional),
           max(date) FILTER (WHERE NOT provisional)
    FROM came
    GROUP BY symbol, source
    ORDER BY symbol, source
    ON CONFLICT (symbol, source) DO UPDATE SET
        complete_days      = f.complete_days + EXCLUDED.complete_days,
        provisional_days   = f.provisional_days + EXCLUDED.provisional_days,
        first_day          = least(f.first_day, EXCLUDED.first_day),
        first_complete_day = least(f.first_complete_day, EXCLUDED.first_complete_day),
        last_complete_day  = greatest(f.last_complete_day, EXCLUDED.last_complete_day);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- TRUNCATE has no rows to show: every figure goes.
CREATE FUNCTION coin_figures_truncate() RETURNS trigger AS $$
BEGIN
    DELETE FROM coin_figures;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Statement-level with transition tables: one pass per statement, not one per row, so a
-- window's upsert costs one small statement and a bulk load of millions of rows stays a
-- single aggregate. (Transition tables allow one event per trigger, hence three.)
CREATE TRIGGER coin_figures_on_insert AFTER INSERT ON daily_prices
    REFERENCING NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION coin_figures_add();
CREATE TRIGGER coin_figures_on_update AFTER UPDATE ON daily_prices
    REFERENCING OLD TABLE AS gone NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION coin_figures_update();
CREATE TRIGGER coin_figures_on_delete AFTER DELETE ON daily_prices
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION coin_figures_remove();
CREATE TRIGGER coin_figures_on_truncate AFTER TRUNCATE ON daily_prices
    FOR EACH STATEMENT EXECUTE FUNCTION coin_figures_truncate();
