//! The `1h` and `4h` rows of a prices answer, rendered by PostgreSQL as the API writes them:
//! JSON objects or CSV lines, joined into one string. Four years of one coin's hours are 35,064 rows;
//! decoding each into typed decimals and building it again as JSON cost several times the
//! query itself (BENCHMARKS.md, row 14), while PostgreSQL writes a `numeric` as text as
//! cheaply as it reads it. The shapes are the API's `HourlyPrice` and `FourHourPrice`
//! (`api::hours`), and the API's tests read them back field by field. Keyed by the coin
//! first, one primary-key range scan each.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{HourRange, Symbol};

/// How a row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// `{"time": ..., "open": "...", ...}`, joined by commas: prices and volume as
    /// decimal strings.
    Json,
    /// `time,open,high,low,close,volume,source,disputed,hours,provisional` lines, joined
    /// by newlines.
    Csv,
}

/// The stored hours of `$1` in `$2..=$3`, ascending, as one string: JSON objects joined by
/// commas when `$4`, else CSV lines joined by newlines. Times are RFC 3339 in UTC
/// (`2024-01-01T04:00:00Z`); the sources are known words, so nothing needs escaping.
/// Concatenation is about twice as fast as `json_build_object`, and one aggregated string
/// spares the driver decoding 35,064 rows.
const HOURS: &str = r#"
SELECT coalesce(string_agg(CASE WHEN $4 THEN
           '{"time":"' || to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           || '","open":"' || open || '","high":"' || high || '","low":"' || low
           || '","close":"' || close || '","volume":"' || volume || '","source":"' || source
           || '","disputed":' || disputed::text || ',"points":' || coalesce(points::text, 'null')
           || ',"provisional":' || provisional::text || '}'
       ELSE concat_ws(',', to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                      open, high, low, close, volume, source, disputed::text, 1, provisional::text)
       END, CASE WHEN $4 THEN ',' ELSE E'\n' END ORDER BY hour), '')
FROM hourly_prices
WHERE symbol = $1 AND hour BETWEEN $2 AND $3
"#;

/// The `4h` blocks of `$1` whose hours lie in `$2..=$3`, ascending, rendered as [`HOURS`]
/// renders hours: the blocks of [`super::hourly_prices::FOUR_HOUR_BLOCKS`]; provisional
/// when a block holds a provisional hour, ends after `$5` (now), or ends after the coin's
/// last hour accounted for (its later hours are still to be stored, as in
/// [`super::final_hours::stream_blocks`]).
const BLOCKS: &str = concat!(
    r#"
SELECT coalesce(string_agg(CASE WHEN $4 THEN
           '{"time":"' || to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           || '","open":"' || open || '","high":"' || high || '","low":"' || low
           || '","close":"' || close || '","volume":"' || volume || '","source":"' || source
           || '","disputed":' || disputed::text || ',"hours":' || hours
           || ',"provisional":' || provisional::text || '}'
       ELSE concat_ws(',', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                      open, high, low, close, volume, source, disputed::text, hours, provisional::text)
       END, CASE WHEN $4 THEN ',' ELSE E'\n' END ORDER BY time), '')
FROM (
    SELECT time, open, high, low, close, volume, source, disputed, hours,
           provisional OR time + interval '4 hours' > $5
               OR time + interval '3 hours'
                  > coalesce((SELECT last_hour FROM hourly_figures WHERE symbol = $1), 'infinity')
               AS provisional
    FROM ("#,
    super::hourly_prices::four_hour_blocks_sql!(),
    ") stored) blocks"
);

/// `symbol`'s stored hours in `range`, rendered and joined (empty when none).
pub async fn hours(
    pool: &PgPool,
    symbol: Symbol,
    range: HourRange,
    rendering: Rendering,
) -> sqlx::Result<String> {
    sqlx::query_scalar(HOURS)
        .bind(symbol.as_str())
        .bind(range.first())
        .bind(range.last())
        .bind(rendering == Rendering::Json)
        .fetch_one(pool)
        .await
}

/// `symbol`'s `4h` blocks over `range` (widened to whole blocks), at `now`, rendered and
/// joined (empty when none).
pub async fn blocks(
    pool: &PgPool,
    symbol: Symbol,
    range: HourRange,
    now: DateTime<Utc>,
    rendering: Rendering,
) -> sqlx::Result<String> {
    sqlx::query_scalar(BLOCKS)
        .bind(symbol.as_str())
        .bind(range.first().block_start())
        .bind(range.last().block_start().plus(3))
        .bind(rendering == Rendering::Json)
        .bind(now)
        .fetch_one(pool)
        .await
}
