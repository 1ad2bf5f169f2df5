-- Days CoinGecko's answer made no candle of (not a single point, or too few), asked at
-- least two days after they ended: holes in its own data. The schedule asked for them
-- again at every tick (two calls a tick, the window and its gap fill) and never got
-- anything. A day answered so twice is left out of the schedule's jobs until 30 days
-- after its last answer (`store::empty_days`); a job asked for with the API or the CLI
-- still asks. A row of a day stored later (from the second source, say) is not counted:
-- the readers join it with what is missing. Only additions.
CREATE TABLE empty_days (
    symbol         TEXT        NOT NULL
        CONSTRAINT empty_days_symbol_is_registered REFERENCES coins (symbol),
    date           DATE        NOT NULL,
    -- How many answers made no candle of the day.
    answers        INTEGER     NOT NULL CHECK (answers > 0),
    last_answer_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, date)
);
