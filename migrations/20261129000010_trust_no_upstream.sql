-- What CoinGecko sends is not trusted (INTERFACE.md, "What the service never trusts"):
-- a stored price is above zero, and each candle records how many points it was built from.
--
-- A database written by an earlier release upgrades in place. Rows stored before the
-- point count existed keep NULL there ("not recorded"). An earlier release could store a
-- price of zero or below (it checked volume only); such a row was never a real price, so
-- rather than lose it or refuse to start, it is marked provisional: it stays readable,
-- counts as missing, and the next job for its range replaces it. The constraint is added
-- NOT VALID (checked on every write from now on) and then validated, which succeeds once
-- no old row breaks it; a row breaking it could only be one of those marked rows.

ALTER TABLE daily_prices ADD COLUMN IF NOT EXISTS points INTEGER;

ALTER TABLE daily_prices DROP CONSTRAINT IF EXISTS daily_prices_points_positive;
ALTER TABLE daily_prices ADD CONSTRAINT daily_prices_points_positive
    CHECK (points IS NULL OR points >= 1);

UPDATE daily_prices SET provisional = TRUE, updated_at = now()
WHERE NOT (open > 0 AND high > 0 AND low > 0 AND close > 0) AND NOT provisional;

ALTER TABLE daily_prices DROP CONSTRAINT IF EXISTS daily_prices_prices_positive;
ALTER TABLE daily_prices ADD CONSTRAINT daily_prices_prices_positive
    CHECK (open > 0 AND high > 0 AND low > 0 AND close > 0) NOT VALID;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM daily_prices WHERE NOT (open > 0 AND high > 0 AND low > 0 AND close > 0)
    ) THEN
        ALTER TABLE daily_prices VALIDATE CONSTRAINT daily_prices_prices_positive;
    END IF;
END
$$;
