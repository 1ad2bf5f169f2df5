//! The hours and `4h` blocks that are over, as float64, streamed: what the export writes
//! (INTERFACE "Export"), like [`super::daily_prices::stream_final`] for days. Provisional
//! hours are left out, and so is every block that holds one, is not over yet, or still
//! waits for hours after the coin's last one accounted for: its close may still change. Keyed by the coin first, one primary-key range scan each.

use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::PgPool;

use super::decode::refused;
use crate::domain::{BlockSource, Hour, Symbol};

/// One exported hour or block: its start, prices and volume as float64, where it came from
/// and whether CoinGecko's check disputes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinalPeriod {
    pub start: Hour,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// In USD, as stored: what it measures depends on `source`.
    pub volume: f64,
    /// A block of hours from two sources is `mixed`.
    pub source: BlockSource,
    pub disputed: bool,
}

/// Which hours to read: from `first` to `last` (inclusive; `None`: no bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourSpan {
    pub first: Option<Hour>,
    pub last: Option<Hour>,
}

type Row = (Hour, f64, f64, f64, f64, f64, String, bool);

/// The final hours of `symbol` in `span`, ascending, as PostgreSQL sends them.
pub fn stream_hours(
    pool: &PgPool,
    symbol: Symbol,
    span: HourSpan,
) -> BoxStream<'_, sqlx::Result<FinalPeriod>> {
    sqlx::query_as::<_, Row>(
        "SELECT hour, open::float8, high::float8, low::float8, close::float8, volume::float8, \
                source, disputed \
         FROM hourly_prices \
         WHERE symbol = $1 AND NOT provisional \
           AND hour BETWEEN coalesce($2, '-infinity'::timestamptz) AND coalesce($3, 'infinity'::timestamptz) \
         ORDER BY hour",
    )
    .bind(symbol.as_str().to_owned())
    .bind(span.first)
    .bind(span.last)
    .fetch(pool)
    .map(decoded)
    .boxed()
}

/// The `4h` blocks of `symbol` whose first hour lies in `span` (widened to whole blocks),
/// ascending: the same aggregate as [`super::hourly_prices::FOUR_HOUR_BLOCKS`], without
/// the blocks that hold a provisional hour, end after `now`, or end after the coin's last
/// hour accounted for (`hourly_figures.last_hour`): an exchange's hours are stored only
/// once over, so the newest block can hold its first hours alone until the next job
/// stores the rest, and its close, high, low and volume would still change.
pub fn stream_blocks(
    pool: &PgPool,
    symbol: Symbol,
    span: HourSpan,
    now: DateTime<Utc>,
) -> BoxStream<'_, sqlx::Result<FinalPeriod>> {
    sqlx::query_as::<_, Row>(
        r#"
SELECT date_bin('4 hours', hour, timestamptz '1970-01-01 00:00:00+00') AS time,
       ((array_agg(open ORDER BY hour))[1])::float8,
       max(high)::float8, min(low)::float8,
       ((array_agg(close ORDER BY hour DESC))[1])::float8,
       sum(volume)::float8,
       CASE WHEN min(source) = max(source) THEN min(source) ELSE 'mixed' END,
       bool_or(disputed)
FROM hourly_prices
WHERE symbol = $1
  AND hour BETWEEN coalesce($2, '-infinity'::timestamptz) AND coalesce($3, 'infinity'::timestamptz)
GROUP BY 1
HAVING NOT bool_or(provisional)
   AND date_bin('4 hours', max(hour), timestamptz '1970-01-01 00:00:00+00') + interval '4 hours' <= $4
   AND date_bin('4 hours', max(hour), timestamptz '1970-01-01 00:00:00+00') + interval '3 hours'
       <= coalesce((SELECT last_hour FROM hourly_figures WHERE symbol = $1), 'infinity')
ORDER BY 1
"#,
    )
    .bind(symbol.as_str().to_owned())
    .bind(span.first.map(Hour::block_start))
    .bind(span.last.map(|last| last.block_start().plus(3)))
    .bind(now)
    .fetch(pool)
    .map(decoded)
    .boxed()
}

fn decoded(row: sqlx::Result<Row>) -> sqlx::Result<FinalPeriod> {
    let (start, open, high, low, close, volume, source, disputed) = row?;
    let source: BlockSource = source.parse().map_err(|e| refused("source", e))?;
    Ok(FinalPeriod {
        start,
        open,
        high,
        low,
        close,
        volume,
        source,
        disputed,
    })
}
