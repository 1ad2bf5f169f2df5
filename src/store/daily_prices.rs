//! `daily_prices`: one candle per symbol and UTC day.

use chrono::NaiveDate;
use futures::stream::{BoxStream, StreamExt};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};

use super::decode::refused;
use crate::domain::{DailyCandle, PriceSource, Symbol};

/// Writes a window of CoinGecko's candles in one statement; returns how many rows were
/// inserted or changed. Not forced, a day already stored for good is left alone and only
/// a provisional row (a day that was not over when fetched) is replaced; forced, every
/// fetched day replaces what is stored, a second source's row included.
pub async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    candles: &[DailyCandle],
    force: bool,
) -> sqlx::Result<u64> {
    upsert_from(tx, symbol, PriceSource::CoinGecko, candles, force).await
}

/// Writes a window of `source`'s candles in one statement. The row of another source is
/// replaced only by CoinGecko's and only when `force` (a forced job whose plan reaches a
/// second-source day); a row of the same source when provisional or `force`.
pub async fn upsert_from(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    source: PriceSource,
    candles: &[DailyCandle],
    force: bool,
) -> sqlx::Result<u64> {
    if candles.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&DailyCandle) -> Decimal| candles.iter().map(f).collect::<Vec<_>>();
    let result = sqlx::query(
        r#"
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional, points, source)
SELECT $1, d.*, $12 FROM UNNEST($2::date[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[],
                               $7::numeric[], $8::timestamptz[], $9::boolean[], $11::integer[]) AS d
ON CONFLICT (symbol, date) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, "timestamp" = EXCLUDED."timestamp",
    provisional = EXCLUDED.provisional, points = EXCLUDED.points, source = EXCLUDED.source,
    updated_at = now()
WHERE CASE WHEN daily_prices.source = EXCLUDED.source THEN $10 OR daily_prices.provisional
           ELSE EXCLUDED.source = 'coingecko' AND ($10 OR daily_prices.provisional) END
"#,
    )
    .bind(symbol.as_str())
    .bind(candles.iter().map(|c| c.date).collect::<Vec<_>>())
    .bind(column(|c| c.open))
    .bind(column(|c| c.high))
    .bind(column(|c| c.low))
    .bind(column(|c| c.close))
    .bind(column(|c| c.volume))
    .bind(candles.iter().map(|c| c.timestamp).collect::<Vec<_>>())
    .bind(candles.iter().map(|c| c.provisional).collect::<Vec<_>>())
    .bind(force)
    .bind(candles.iter().map(|c| c.points).collect::<Vec<_>>())
    .bind(source.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

/// Whether any day of `symbol` before `day` is stored, from either source: a second-source
/// window starting at `day` is then not at the edge of the product's history, so an answer
/// empty at its start is a halt, not where the product's candles begin.
pub async fn stored_before(
    executor: impl sqlx::PgExecutor<'_>,
    symbol: Symbol,
    day: NaiveDate,
) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM daily_prices WHERE symbol = $1 AND date < $2)")
        .bind(symbol.as_str())
        .bind(day)
        .fetch_one(executor)
        .await
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

/// A stored day that is over (not provisional), its prices and volume as float64: what
/// the export writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinalDay {
    pub date: NaiveDate,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub source: PriceSource,
}

/// The days of `symbol` that are over, from `start` to `end` (inclusive; `None`: no
/// bound), ascending, streamed as PostgreSQL sends them: however long the history, only
/// the rows in flight are held. Provisional days are left out, since their close and
/// volume may still change. PostgreSQL turns each `numeric` into `float8` through its text
/// form, so every number is the float64 nearest the stored decimal.
pub fn stream_final(
    pool: &PgPool,
    symbol: Symbol,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> BoxStream<'_, sqlx::Result<FinalDay>> {
    type Row = (NaiveDate, f64, f64, f64, f64, f64, String);
    sqlx::query_as::<_, Row>(
        "SELECT date, open::float8, high::float8, low::float8, close::float8, volume::float8, source \
         FROM daily_prices \
         WHERE symbol = $1 AND NOT provisional \
           AND date BETWEEN coalesce($2, '-infinity'::date) AND coalesce($3, 'infinity'::date) \
         ORDER BY date",
    )
    .bind(symbol.as_str().to_owned())
    .bind(start)
    .bind(end)
    .fetch(pool)
    .map(|row| {
        let (date, open, high, low, close, volume, source) = row?;
        let source = source
            .parse::<PriceSource>()
            .map_err(|e| refused("source", e))?;
        Ok(FinalDay {
            date,
            open,
            high,
            low,
            close,
            volume,
            source,
        })
    })
    .boxed()
}
