-- The schedule that keeps tracked coins current (SYNC_SCHEDULE). Every serve and worker
-- process computes the same ticks; this one row says which tick was acted on last. A
-- process acts on a tick only if it moves `last_tick` forward
-- (`UPDATE ... WHERE last_tick IS NULL OR last_tick < $tick`), so whatever the number of
-- processes and however their clocks differ, each tick is acted on once. NULL: no tick
-- was ever acted on, so the first process to start acts on the latest past tick.
CREATE TABLE sync_schedule (
    singleton  BOOLEAN     PRIMARY KEY DEFAULT TRUE CONSTRAINT sync_schedule_one_row CHECK (singleton),
    last_tick  TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO sync_schedule (singleton) VALUES (TRUE);

-- What each acted-on tick did, newest kept (the acting process prunes old rows): for
-- operators, the benchmarks and the tests. The primary key on `tick` is a second guard
-- that no tick is acted on twice.
CREATE TABLE sync_ticks (
    tick         TIMESTAMPTZ PRIMARY KEY,
    -- The process that acted (its worker name), and when by the database's clock.
    acted_by     TEXT        NOT NULL,
    acted_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Acted on at start, for a tick that passed while no process ran.
    catch_up     BOOLEAN     NOT NULL,
    -- Tracked coins looked at; those not up to date (days missing, or a job of theirs
    -- active); jobs queued; coins left to the next tick because a job of theirs was active.
    coins_tracked INTEGER    NOT NULL,
    coins_behind  INTEGER    NOT NULL,
    jobs_queued   INTEGER    NOT NULL,
    coins_busy    INTEGER    NOT NULL
);

-- Every acted-on tick is announced on channel `sync_ticks` (payload: the tick), so that
-- tests and benchmarks wait for the event rather than poll.
CREATE FUNCTION sync_ticks_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('sync_ticks', NEW.tick::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sync_ticks_notify
    AFTER INSERT ON sync_ticks
    FOR EACH ROW EXECUTE FUNCTION sync_ticks_notify();
