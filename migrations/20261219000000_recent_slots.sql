-- The slots of the last minute, in each call budget's row, so that `GET /api/v1/budget`
-- says how many calls every process on the database began in the last 60 seconds (the
-- process that answers it, an `api`, often makes none itself).
--
-- Each slot taken appends its start and drops the starts older than a minute, in the
-- statement that takes it: the array holds about a minute of slots (at most
-- `calls_per_minute` of them, plus those handed out ahead of now to waiting callers).
ALTER TABLE coingecko_call_budget
    ADD COLUMN recent_slots TIMESTAMPTZ[] NOT NULL DEFAULT '{}';
