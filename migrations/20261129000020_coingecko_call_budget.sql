-- One CoinGecko call budget for every process sharing this database (issue 11).
--
-- GCRA in one row per CoinGecko key: `tat` is the theoretical arrival time of the next
-- call. Each attempt takes its own slot with one statement,
--   tat = greatest(tat, clock_timestamp()) + interval RETURNING the slot,
-- and sleeps until it. The row lock orders callers; no caller waits on another's HTTP
-- request. A process that dies after taking a slot wastes that one slot, nothing more;
-- an idle budget does not save up slots, so a replica that joins cannot burst.
--
-- UNLOGGED: a slot is then one statement without a WAL flush (about 1 ms on loopback
-- instead of 7 ms with the flush of every commit). What that gives up: after a crash of
-- PostgreSQL (not a clean restart) or a fail-over to a standby the row is gone, and the
-- next callers start from an idle budget, so the few slots already handed out ahead of
-- that moment (at most one per caller then waiting) may be handed out once more.
CREATE UNLOGGED TABLE coingecko_call_budget (
    -- A SHA-256 prefix of the CoinGecko key (`none` without one); never the key itself.
    key_fingerprint  TEXT        PRIMARY KEY,
    tat              TIMESTAMPTZ NOT NULL,
    -- Slots handed out so far, over every process (for /metrics).
    granted          BIGINT      NOT NULL DEFAULT 0,
    -- The budget the last caller spaced its slot by (COINGECKO_CALLS_PER_MINUTE).
    calls_per_minute INTEGER     NOT NULL CHECK (calls_per_minute > 0)
);
