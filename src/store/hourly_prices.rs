//! `hourly_prices`: one candle per coin and UTC hour, written a window at a time and read
//! as `1h` rows or as `4h` blocks aggregated in SQL. Every statement is keyed by the coin
//! first (`WHERE symbol = $1 AND hour ...`), one primary-key range scan each.
//!
//! # Which row wins
//!
//! A window's candle replaces the stored one of its hour when:
//! - both come from the same source, and the stored one is provisional or the job is
//!   forced (as for days);
//! - the new one is an exchange candle (Coinbase) and the stored one was built from
//!   CoinGecko's points: a true candle is always better than one made of a few prices;
//! - the new one is CoinGecko-built and final, and the stored exchange candle provisional.
//!
//! A final exchange candle is never replaced by a CoinGecko-built hour, forced or not.
//! Storing an exchange candle deletes its hour from `hours_without_trades` in the same
//! statement (it had trades after all). An exchange candle stored without a check keeps the
//! CoinGecko point the row it replaces had, judged again against its own band.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Postgres, Row, Transaction};

use super::decode::refused;
use crate::domain::{
    BlockSource, CheckPoint, DisputeRule, FourHourCandle, Hour, HourCheck, HourParts, HourRange,
    HourlyCandle, PriceSource, Symbol,
};

/// The window's upsert: `$1` the symbol, `$2..$14` the candles' columns, `$15` force.
/// Returns how many rows were inserted or replaced.
const UPSERT: &str = r#"
WITH stored AS (
    INSERT INTO hourly_prices AS p (symbol, hour, open, high, low, close, volume, source, points,
                                    provisional, check_price, check_at, check_deviation_percent, disputed)
    SELECT $1, c.* FROM UNNEST($2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[],
                                $6::numeric[], $7::numeric[], $8::text[], $9::integer[], $10::boolean[],
                                $11::numeric[], $12::timestamptz[], $13::numeric[], $14::boolean[]) AS c
    ON CONFLICT (symbol, hour) DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
        volume = EXCLUDED.volume, source = EXCLUDED.source, points = EXCLUDED.points,
        provisional = EXCLUDED.provisional, check_price = EXCLUDED.check_price,
        check_at = EXCLUDED.check_at, check_deviation_percent = EXCLUDED.check_deviation_percent,
        disputed = EXCLUDED.disputed, updated_at = now()
    WHERE CASE
        WHEN p.source = EXCLUDED.source THEN $15 OR p.provisional
        WHEN EXCLUDED.source = 'coinbase' THEN TRUE
        ELSE p.provisional AND NOT EXCLUDED.provisional
    END
    RETURNING p.hour, p.source
), traded AS (
    DELETE FROM hours_without_trades n USING stored s
    WHERE n.symbol = $1 AND n.hour = s.hour AND s.source = 'coinbase'
)
SELECT count(*) FROM stored
"#;

/// Writes a window of candles of `symbol` in one statement (see the module's docs for
/// which row wins); returns how many rows were inserted or replaced. `rule` judges a check
/// point carried over from a replaced row.
pub async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    candles: &[HourlyCandle],
    force: bool,
    rule: DisputeRule,
) -> sqlx::Result<u64> {
    if candles.is_empty() {
        return Ok(0);
    }
    let candles = keep_stored_checks(tx, symbol, candles, rule).await?;
    let column = |f: fn(&HourlyCandle) -> Decimal| candles.iter().map(f).collect::<Vec<_>>();
    let check = |f: fn(&HourCheck) -> Decimal| {
        candles
            .iter()
            .map(|c| c.check.as_ref().map(f))
            .collect::<Vec<_>>()
    };
    let stored: i64 = sqlx::query_scalar(UPSERT)
        .bind(symbol.as_str())
        .bind(candles.iter().map(|c| c.hour).collect::<Vec<_>>())
        .bind(column(|c| c.open))
        .bind(column(|c| c.high))
        .bind(column(|c| c.low))
        .bind(column(|c| c.close))
        .bind(column(|c| c.volume))
        .bind(
            candles
                .iter()
                .map(|c| c.source.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(candles.iter().map(|c| c.points).collect::<Vec<_>>())
        .bind(candles.iter().map(|c| c.provisional).collect::<Vec<_>>())
        .bind(check(|c| c.point.price))
        .bind(
            candles
                .iter()
                .map(|c| c.check.map(|c| c.point.at))
                .collect::<Vec<_>>(),
        )
        .bind(check(|c| c.deviation_percent))
        .bind(
            candles
                .iter()
                .map(|c| c.check.is_some_and(|c| c.disputed))
                .collect::<Vec<_>>(),
        )
        .bind(force)
        .fetch_one(&mut **tx)
        .await?;
    Ok(u64::try_from(stored).unwrap_or(0))
}

/// `candles`, each exchange candle without a check given the point its hour's stored
/// exchange candle has (if any), judged against the new band.
async fn keep_stored_checks(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    candles: &[HourlyCandle],
    rule: DisputeRule,
) -> sqlx::Result<Vec<HourlyCandle>> {
    let unchecked: Vec<Hour> = candles
        .iter()
        .filter(|c| c.source == PriceSource::Coinbase && c.check.is_none())
        .map(|c| c.hour)
        .collect();
    let stored: HashMap<Hour, CheckPoint> = if unchecked.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (Hour, DateTime<Utc>, Decimal)>(
            "SELECT hour, check_at, check_price FROM hourly_prices \
             WHERE symbol = $1 AND hour = ANY($2) AND check_price IS NOT NULL",
        )
        .bind(symbol.as_str())
        .bind(&unchecked)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(hour, at, price)| (hour, CheckPoint { at, price }))
        .collect()
    };
    Ok(candles
        .iter()
        .map(|candle| match stored.get(&candle.hour) {
            Some(point) if candle.check.is_none() => candle
                .clone()
                .with_check(*point, rule)
                .unwrap_or_else(|_| candle.clone()),
            _ => candle.clone(),
        })
        .collect())
}

/// Puts CoinGecko's `points` (one per hour) beside the exchange candles stored for their
/// hours, judged by `rule`, replacing an earlier point; hours without an exchange candle
/// are left alone. For points that come after the candles (a later job's CoinGecko
/// windows); when both are at hand, [`HourlyCandle::with_check`] before [`upsert`] does
/// it in one write. Returns how many candles changed. `updated_at` stays as it was: it
/// says when the candle itself was written, which a forced job that resumes reads to know
/// the hours it fetched already (`hourly_coverage::runs_not_stored_since`).
pub async fn attach_checks(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    points: &[(Hour, CheckPoint)],
    rule: DisputeRule,
) -> sqlx::Result<u64> {
    if points.is_empty() {
        return Ok(0);
    }
    let hours: Vec<Hour> = points.iter().map(|(hour, _)| *hour).collect();
    let bands: HashMap<Hour, (Decimal, Decimal)> = sqlx::query_as::<_, (Hour, Decimal, Decimal)>(
        "SELECT hour, low, high FROM hourly_prices \
             WHERE symbol = $1 AND hour = ANY($2) AND source = 'coinbase'",
    )
    .bind(symbol.as_str())
    .bind(&hours)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|(hour, low, high)| (hour, (low, high)))
    .collect();
    let checks: Vec<(Hour, HourCheck)> = points
        .iter()
        .filter(|(hour, point)| hour.contains(point.at) && point.price > Decimal::ZERO)
        .filter_map(|(hour, point)| {
            let (low, high) = bands.get(hour)?;
            Some((*hour, rule.judge(*low, *high, *point)))
        })
        .collect();
    let result = sqlx::query(
        "UPDATE hourly_prices p SET check_price = c.price, check_at = c.at, \
             check_deviation_percent = c.deviation, disputed = c.disputed \
         FROM UNNEST($2::timestamptz[], $3::numeric[], $4::timestamptz[], $5::numeric[], $6::boolean[]) \
              AS c(hour, price, at, deviation, disputed) \
         WHERE p.symbol = $1 AND p.hour = c.hour AND p.source = 'coinbase' \
           AND (p.check_price, p.check_at, p.disputed) IS DISTINCT FROM (c.price, c.at, c.disputed)",
    )
    .bind(symbol.as_str())
    .bind(checks.iter().map(|(hour, _)| *hour).collect::<Vec<_>>())
    .bind(checks.iter().map(|(_, c)| c.point.price).collect::<Vec<_>>())
    .bind(checks.iter().map(|(_, c)| c.point.at).collect::<Vec<_>>())
    .bind(checks.iter().map(|(_, c)| c.deviation_percent).collect::<Vec<_>>())
    .bind(checks.iter().map(|(_, c)| c.disputed).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

/// The stored hours of `$1` in `$2..=$3`, ascending: the `1h` read. Public so that the
/// benchmarks can show its plan.
pub const LIST: &str = r#"
SELECT hour, open, high, low, close, volume, source, points, provisional,
       check_price, check_at, check_deviation_percent, disputed
FROM hourly_prices
WHERE symbol = $1 AND hour BETWEEN $2 AND $3
ORDER BY hour
"#;

/// The stored hours of `symbol` in `range` (provisional ones included, and saying so),
/// ascending.
pub async fn list(
    pool: &PgPool,
    symbol: Symbol,
    range: HourRange,
) -> sqlx::Result<Vec<HourlyCandle>> {
    let rows: Vec<Stored> = sqlx::query_as(LIST)
        .bind(symbol.as_str())
        .bind(range.first())
        .bind(range.last())
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|row| row.0).collect())
}

/// The same hours as [`list`], as a stream: for a reader that writes each row out as it
/// comes (a 4-year `1h` answer is 35,064 rows; an export of many coins), so that the
/// database, the decoding and the writing overlap and memory stays bounded.
pub fn stream(
    pool: &PgPool,
    symbol: Symbol,
    range: HourRange,
) -> impl Stream<Item = sqlx::Result<HourlyCandle>> + Send + '_ {
    sqlx::query_as::<_, Stored>(LIST)
        .bind(symbol.as_str().to_owned())
        .bind(range.first())
        .bind(range.last())
        .fetch(pool)
        .map_ok(|row| row.0)
}

/// A stored row, made into a candle by the same checks as any other. Read by position, in
/// [`LIST`]'s order, without a look-up by name per column: a 4-year read decodes 35,064.
struct Stored(HourlyCandle);

impl FromRow<'_, PgRow> for Stored {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let check = match row.try_get::<Option<Decimal>, _>(9)? {
            Some(price) => Some(HourCheck {
                point: CheckPoint {
                    at: row.try_get(10)?,
                    price,
                },
                deviation_percent: row.try_get(11)?,
                disputed: row.try_get(12)?,
            }),
            None => None,
        };
        let source: &str = row.try_get(6)?;
        let parts = HourParts {
            hour: row.try_get(0)?,
            open: row.try_get(1)?,
            high: row.try_get(2)?,
            low: row.try_get(3)?,
            close: row.try_get(4)?,
            volume: row.try_get(5)?,
            source: source.parse().map_err(|e| refused("source", e))?,
            points: row.try_get(7)?,
            provisional: row.try_get(8)?,
            check,
        };
        HourlyCandle::new(parts)
            .map(Stored)
            .map_err(|e| refused("hour", e))
    }
}

/// The `4h` read: the stored hours of `$1` in `$2..=$3` aggregated per block of four UTC
/// hours (`date_bin` from the epoch, a multiple of four hours: 00, 04, ... 20 UTC), as a
/// literal, so that the query that renders the blocks (`hour_rows`) is built on it.
macro_rules! four_hour_blocks_sql {
    () => {
        r#"
SELECT date_bin('4 hours', hour, timestamptz '1970-01-01 00:00:00+00') AS time,
       (array_agg(open ORDER BY hour))[1]       AS open,
       max(high)                                AS high,
       min(low)                                 AS low,
       (array_agg(close ORDER BY hour DESC))[1] AS close,
       sum(volume)                              AS volume,
       CASE WHEN min(source) = max(source) THEN min(source) ELSE 'mixed' END AS source,
       bool_or(disputed)                        AS disputed,
       bool_or(provisional)                     AS provisional,
       count(*)::smallint                       AS hours
FROM hourly_prices
WHERE symbol = $1 AND hour BETWEEN $2 AND $3
GROUP BY 1
ORDER BY 1
"#
    };
}
pub(crate) use four_hour_blocks_sql;

/// The query of `four_hour_blocks_sql!`. Public so that the benchmarks can show its plan.
pub const FOUR_HOUR_BLOCKS: &str = four_hour_blocks_sql!();

/// The `4h` candles of `symbol` over `range`, widened to whole blocks so that no block is
/// cut by the range, ascending; a block holds the hours stored (1 to 4) and says how many.
/// [`FourHourCandle::of_hours`] is the same rule in memory.
pub async fn four_hour_blocks(
    pool: &PgPool,
    symbol: Symbol,
    range: HourRange,
) -> sqlx::Result<Vec<FourHourCandle>> {
    let rows: Vec<Block> = sqlx::query_as(FOUR_HOUR_BLOCKS)
        .bind(symbol.as_str())
        .bind(range.first().block_start())
        .bind(range.last().block_start().plus(3))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|row| row.0).collect())
}

struct Block(FourHourCandle);

impl FromRow<'_, PgRow> for Block {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let source: String = row.try_get("source")?;
        let hours: i16 = row.try_get("hours")?;
        Ok(Block(FourHourCandle {
            time: row.try_get("time")?,
            open: row.try_get("open")?,
            high: row.try_get("high")?,
            low: row.try_get("low")?,
            close: row.try_get("close")?,
            volume: row.try_get("volume")?,
            source: source
                .parse::<BlockSource>()
                .map_err(|e| refused("source", e))?,
            disputed: row.try_get("disputed")?,
            provisional: row.try_get("provisional")?,
            hours: u8::try_from(hours).unwrap_or(0),
        }))
    }
}
