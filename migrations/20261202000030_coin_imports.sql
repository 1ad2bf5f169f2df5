-- Imports of the top N coins by market cap (`coins track-top N`, `POST
-- /api/v1/coins/track-top`, issue 20): one row per import, read like a job. At most one
-- runs at a time across every process (the partial unique index); a row whose process
-- died stops counting as running once its heartbeat (`updated_at`) is two minutes old.
CREATE TABLE coin_imports (
    id            UUID        PRIMARY KEY,
    status        TEXT        NOT NULL
        CONSTRAINT coin_imports_status_is_known CHECK (status IN ('running', 'completed', 'failed')),
    -- How many of the largest coins were asked for, and from which day to track them.
    n             INTEGER     NOT NULL CONSTRAINT coin_imports_n_positive CHECK (n > 0),
    track_since   DATE,
    -- Who asked: 'api' or 'cli'.
    trigger       TEXT        NOT NULL CONSTRAINT coin_imports_trigger_is_known CHECK (trigger IN ('api', 'cli')),
    -- Progress: pages of /coins/markets read, and coins of the list dealt with.
    pages_done    INTEGER     NOT NULL DEFAULT 0,
    pages_total   INTEGER     NOT NULL DEFAULT 0,
    coins_done    INTEGER     NOT NULL DEFAULT 0,
    coins_total   INTEGER     NOT NULL DEFAULT 0,
    -- Symbols registered by this import (new coins, each checked with one call), and
    -- those already registered with the same id, now tracked.
    registered    TEXT[]      NOT NULL DEFAULT '{}',
    already       TEXT[]      NOT NULL DEFAULT '{}',
    -- Coins of the list left out, each {"symbol", "coingecko_id", "reason"}.
    skipped       JSONB       NOT NULL DEFAULT '[]',
    error_message TEXT        CONSTRAINT coin_imports_error_is_short CHECK (length(error_message) <= 2000),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at  TIMESTAMPTZ
);

CREATE UNIQUE INDEX coin_imports_one_running ON coin_imports ((TRUE)) WHERE status = 'running';
CREATE INDEX coin_imports_created_at ON coin_imports (created_at);
