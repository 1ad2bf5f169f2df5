-- Hours, not just days (issue 26): an import of the top coins may turn hourly candles on for
-- every coin it registers or tracks (`coins track-top N --hourly`, `"hourly": true` on
-- `POST /api/v1/coins/track-top`), and its record says so, as it says `track_since`. Only an
-- addition: imports of earlier releases read as imports that left hours alone.
ALTER TABLE coin_imports ADD COLUMN hourly BOOLEAN NOT NULL DEFAULT FALSE;
