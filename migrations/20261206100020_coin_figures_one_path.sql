-- The per-coin figures' triggers (20261202000020_coin_figures.sql) through one path
-- (issue 25). There, the update function repeated the removal's statement and the
-- addition's, line for line. Here an update is what it always meant: its old rows removed
-- and its new rows added, by the same two pieces a DELETE and an INSERT use, so the three
-- cannot drift apart. The figures come out the same; tests/it/figures.rs compares them
-- with a scan of daily_prices after every kind of change.

-- No writer may slip in while the triggers are swapped.
LOCK TABLE daily_prices IN SHARE ROW EXCLUSIVE MODE;

-- What a statement removed or added, for one coin and source: the figures of those rows.
CREATE TYPE coin_figures_delta AS (
    symbol         TEXT,
    source         TEXT,
    complete       BIGINT,
    provisional    BIGINT,
    first_day      DATE,
    first_complete DATE,
    last_complete  DATE
);

-- Rows gone: counts go down; an extreme that may have gone with them is read again from
-- the table (one index probe), and only then. The table is read as it is after the
-- statement, so the extremes are right whatever an update moved.
CREATE FUNCTION coin_figures_subtract(gone coin_figures_delta[]) RETURNS void AS $$
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
    FROM unnest(gone) d
    WHERE f.symbol = d.symbol AND f.source = d.source;
$$ LANGUAGE sql;

-- Rows come: counts go up, extremes widen. Coins in symbol order, so that two bulk loads
-- lock the figures' rows in one order.
CREATE FUNCTION coin_figures_add(came coin_figures_delta[]) RETURNS void AS $$
    INSERT INTO coin_figures AS f (symbol, source, complete_days, provisional_days, first_day,
                                   first_complete_day, last_complete_day)
    SELECT symbol, source, complete, provisional, first_day, first_complete, last_complete
    FROM unnest(came)
    ORDER BY symbol, source
    ON CONFLICT (symbol, source) DO UPDATE SET
        complete_days      = f.complete_days + EXCLUDED.complete_days,
        provisional_days   = f.provisional_days + EXCLUDED.provisional_days,
        -- least and greatest skip NULLs.
        first_day          = least(f.first_day, EXCLUDED.first_day),
        first_complete_day = least(f.first_complete_day, EXCLUDED.first_complete_day),
        last_complete_day  = greatest(f.last_complete_day, EXCLUDED.last_complete_day);
$$ LANGUAGE sql;

-- The one trigger function of INSERT, UPDATE and DELETE: what went (`gone`, on an update
-- or a delete) is subtracted, then what came (`came`, on an insert or an update) is added.
-- Each transition table is summed by coin and source first, so a bulk load of millions of
-- rows stays one aggregate and the pieces get a handful of rows.
--
-- The sum is dynamic SQL over one of two constant names: a transition table is visible
-- only to the trigger function's own statements (not to a function it calls), and an
-- INSERT trigger has no `gone` a static statement could name.
CREATE FUNCTION coin_figures_change() RETURNS trigger AS $$
DECLARE
    summed CONSTANT TEXT := $sum$
        SELECT ARRAY(
            SELECT ROW(symbol, source,
                       count(*) FILTER (WHERE NOT provisional),
                       count(*) FILTER (WHERE provisional),
                       min(date),
                       min(date) FILTER (WHERE NOT provisional),
                       max(date) FILTER (WHERE NOT provisional))::coin_figures_delta
            FROM %I GROUP BY symbol, source)
    $sum$;
    delta coin_figures_delta[];
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        EXECUTE format(summed, 'gone') INTO delta;
        PERFORM coin_figures_subtract(delta);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        EXECUTE format(summed, 'came') INTO delta;
        PERFORM coin_figures_add(delta);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- The same four triggers, now on the one function (TRUNCATE keeps its own: it has no rows
-- to show).
DROP TRIGGER coin_figures_on_insert ON daily_prices;
DROP TRIGGER coin_figures_on_update ON daily_prices;
DROP TRIGGER coin_figures_on_delete ON daily_prices;
CREATE TRIGGER coin_figures_on_insert AFTER INSERT ON daily_prices
    REFERENCING NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION coin_figures_change();
CREATE TRIGGER coin_figures_on_update AFTER UPDATE ON daily_prices
    REFERENCING OLD TABLE AS gone NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION coin_figures_change();
CREATE TRIGGER coin_figures_on_delete AFTER DELETE ON daily_prices
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION coin_figures_change();

DROP FUNCTION coin_figures_add();
DROP FUNCTION coin_figures_remove();
DROP FUNCTION coin_figures_update();
