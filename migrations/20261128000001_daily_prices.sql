-- One row per coin and UTC day: the daily candle built from CoinGecko's points of that day.
CREATE TABLE IF NOT EXISTS daily_prices (
    symbol      TEXT        NOT NULL,
    date        DATE        NOT NULL,
    open        NUMERIC     NOT NULL,
    high        NUMERIC     NOT NULL,
    low         NUMERIC     NOT NULL,
    close       NUMERIC     NOT NULL,
    volume      NUMERIC     NOT NULL,
    -- Time of the last point of the day that went into the candle.
    "timestamp" TIMESTAMPTZ NOT NULL,
    -- A day that was not over when it was fetched: counted as missing until replaced.
    provisional BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, date),
    CONSTRAINT daily_prices_candle_is_consistent CHECK (low <= open AND low <= close AND high >= open AND high >= close AND low <= high),
    CONSTRAINT daily_prices_volume_not_negative CHECK (volume >= 0)
);
