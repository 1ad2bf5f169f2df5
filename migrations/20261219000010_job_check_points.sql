-- CoinGecko's hourly points a job of an hourly coin has read, kept until the job ends, so
-- that an attempt that resumes it (after a deploy, a crash, a lost lease) checks the
-- exchange candles it fetches against them: they were read by an earlier attempt's
-- CoinGecko windows, which the resumed attempt does not ask again. Without them those
-- hours would be stored unchecked.
--
-- Written in the checkpoint of each CoinGecko window (one row per hour with a point),
-- deleted when the job ends; a job pruned by retention takes any left with it.
CREATE TABLE job_check_points (
    job_id UUID        NOT NULL REFERENCES ingestion_jobs (id) ON DELETE CASCADE,
    hour   TIMESTAMPTZ NOT NULL
        CONSTRAINT job_check_points_hour_on_the_grid CHECK (extract(epoch FROM hour) % 3600 = 0),
    -- CoinGecko's first point inside the hour: when, and its price.
    at     TIMESTAMPTZ NOT NULL,
    price  NUMERIC     NOT NULL CONSTRAINT job_check_points_price_positive CHECK (price > 0),
    PRIMARY KEY (job_id, hour)
);
