-- Days CoinGecko's answer made no candle of (not a single point, or too few), asked at
-- least two days after they ended: holes in its own data. The schedule asked for them
-- again at every tick (two calls a tick, the window and its gap fill) and never got
-- anything. A day answered so twice, a day apart, is left out of the schedule's jobs
-- until 30 days after its last answer (`store::empty_days`); a job asked for with the
-- API or the CLI still asks. A day stored later (from the second source, say) loses its
-- row (below). Only additions.
CREATE TABLE empty_days (
    symbol         TEXT        NOT NULL
        CONSTRAINT empty_days_symbol_is_registered REFERENCES coins (symbol),
    date           DATE        NOT NULL,
    -- How many answers made no candle of the day, counted at least 20 hours apart, and
    -- when the last one counted came.
    answers        INTEGER     NOT NULL CHECK (answers > 0),
    last_answer_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, date)
);

-- A day stored for good is no hole: its row goes in the statement that stores it, whoever
-- writes it (a job of either source, or plain SQL), so that the tick, which counts a
-- coin's resting days among its complete ones, never counts a day twice.
CREATE FUNCTION empty_days_forget_stored() RETURNS trigger AS $$
BEGIN
    DELETE FROM empty_days e USING came c
    WHERE e.symbol = c.symbol AND e.date = c.date AND NOT c.provisional;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER empty_days_forget_on_insert AFTER INSERT ON daily_prices
    REFERENCING NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION empty_days_forget_stored();
CREATE TRIGGER empty_days_forget_on_update AFTER UPDATE ON daily_prices
    REFERENCING NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION empty_days_forget_stored();
