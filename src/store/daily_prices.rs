//! `daily_prices`: one candle per symbol and UTC day.

use chrono::NaiveDate;
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{DailyCandle, Symbol};

/// One statement for a whole window. Not forced (`$10` false), a day already stored for
/// good is left alone and only a provisional row (a day that was not over when fetched)
/// is replaced; forced, every fetched day replaces what is stored.
const UPSERT: &str = r#"
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional, points)
SELECT $1, d.* FROM UNNEST($2::date[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[],
                          $7::numeric[], $8::timestamptz[], $9::boolean[], $11::integer[]) AS d
ON CONFLICT (symbol, date) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, "timestamp" = EXCLUDED."timestamp",
    provisional = EXCLUDED.provisional, points = EXCLUDED.points, updated_at = now()
WHERE $10 OR daily_prices.provisional
"#;

/// Writes a window's candles in one statement; returns how many rows were inserted or
/// changed.
pub async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    candles: &[DailyCandle],
    force: bool,
) -> sqlx::Result<u64> {
    if candles.is_empty() {
        return Ok(0);
    }
    let mut dates = Vec::with_capacity(candles.len());
    let mut opens = Vec::with_capacity(candles.len());
    let mut highs = Vec::with_capacity(candles.len());
    let mut lows = Vec::with_capacity(candles.len());
    let mut closes = Vec::with_capacity(candles.len());
    let mut volumes = Vec::with_capacity(candles.len());
    let mut timestamps = Vec::with_capacity(candles.len());
    let mut provisional = Vec::with_capacity(candles.len());
    let mut points = Vec::with_capacity(candles.len());
    for candle in candles {
        dates.push(candle.date);
        opens.push(candle.open);
        highs.push(candle.high);
        lows.push(candle.low);
        closes.push(candle.close);
        volumes.push(candle.volume);
        timestamps.push(candle.timestamp);
        provisional.push(candle.provisional);
        points.push(candle.points);
    }
    let result = sqlx::query(UPSERT)
        .bind(symbol.as_str())
        .bind(dates)
        .bind(opens)
        .bind(highs)
        .bind(lows)
        .bind(closes)
        .bind(volumes)
        .bind(timestamps)
        .bind(provisional)
        .bind(force)
        .bind(points)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected())
}

/// The stored days of `symbol` between `start` and `end` (inclusive), ascending.
pub async fn list(
    pool: &PgPool,
    symbol: Symbol,
    start: NaiveDate,
    end: NaiveDate,
) -> sqlx::Result<Vec<DailyCandle>> {
    sqlx::query_as(
        r#"SELECT date, open, high, low, close, volume, "timestamp", provisional, points
           FROM daily_prices WHERE symbol = $1 AND date BETWEEN $2 AND $3 ORDER BY date"#,
    )
    .bind(symbol.as_str())
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
}
