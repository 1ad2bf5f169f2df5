//! Which hours of a range are missing, how complete a range is in hours, and the hours of
//! each day for the page's calendar.
//!
//! An hour is accounted for when a final (not provisional) candle of any source is stored
//! for it, or when it is recorded as without trades; every other hour of the range is
//! missing. Which hours are expected at all (not before the coin's first day, not before
//! the product's first hourly candle, not beyond the last complete hour, not outside the
//! plan's reach for CoinGecko-built hours) is the caller's to say, by the range it asks
//! about: the store never guesses it.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgExecutor, PgPool};

use super::coins::CoinRecord;
use super::hourly_coins;
use crate::config::FallbackSource;
use crate::domain::{
    Hour, HourRange, PlanReach, PriceSource, Symbol, expected_hours, hourly_source,
};

/// The most missing runs a coverage lists (INTERFACE: `missing_runs` lists at most 1000).
pub const MAX_LISTED_RUNS: i64 = 1000;

/// The runs of missing hours of `$1` in `$2..=$3` (`$4` at most), each `(first hour,
/// hours)`, ascending, with the number of runs and of missing hours in all: the hours
/// accounted for, between two sentinels just outside the range, and the gaps between
/// consecutive ones. One pass over the two primary keys' index ranges, whatever the
/// number of runs. Public so that the benchmarks can show its plan.
pub const MISSING_RUNS: &str = r#"
WITH accounted AS (
    SELECT hour FROM hourly_prices
    WHERE symbol = $1 AND hour BETWEEN $2 AND $3 AND NOT provisional
    UNION ALL
    SELECT hour FROM hours_without_trades
    WHERE symbol = $1 AND hour BETWEEN $2 AND $3
    UNION ALL
    SELECT $2::timestamptz - interval '1 hour'
    UNION ALL
    SELECT $3::timestamptz + interval '1 hour'
), gaps AS (
    SELECT hour + interval '1 hour' AS first, lead(hour) OVER (ORDER BY hour) AS next
    FROM accounted
), runs AS (
    SELECT first, (extract(epoch FROM next - first) / 3600)::bigint AS hours
    FROM gaps WHERE next > first
)
SELECT first, hours, count(*) OVER () AS runs, sum(hours) OVER ()::bigint AS missing
FROM runs ORDER BY first LIMIT $4
"#;

/// Missing runs of a range, listed up to a limit, and counted in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissingRuns {
    /// The first runs, ascending.
    pub listed: Vec<HourRange>,
    /// How many runs there are in all.
    pub runs: i64,
    /// How many hours are missing in all.
    pub hours: i64,
}

async fn missing(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    range: HourRange,
    limit: i64,
) -> sqlx::Result<MissingRuns> {
    let rows: Vec<(Hour, i64, i64, i64)> = sqlx::query_as(MISSING_RUNS)
        .bind(symbol.as_str())
        .bind(range.first())
        .bind(range.last())
        .bind(limit)
        .fetch_all(executor)
        .await?;
    let (runs, hours) = rows.first().map_or((0, 0), |r| (r.2, r.3));
    Ok(MissingRuns {
        listed: rows
            .into_iter()
            .filter_map(|(first, hours, _, _)| HourRange::starting(first, hours))
            .collect(),
        runs,
        hours,
    })
}

/// The hours of `days` that `record`'s coin can have at `now`, by its own columns (whether
/// it keeps hours, its product's verdict, where that product's hours begin): what coverage
/// in hours expects, and what a job that failed counts as still missing.
pub async fn expected_of(
    pool: &PgPool,
    record: &CoinRecord,
    fallback: FallbackSource,
    reach: PlanReach,
    days: (NaiveDate, NaiveDate),
    now: DateTime<Utc>,
) -> sqlx::Result<Option<HourRange>> {
    let hourly = hourly_coins::get(pool, record.coin.symbol).await?;
    let product = record.mapping.exchange_product(fallback);
    let source = hourly_source(hourly.as_ref().is_some_and(|h| h.hourly), product);
    let hours_from = hourly.and_then(|h| h.coinbase_hours_from);
    Ok(expected_hours(
        &record.coin,
        source,
        hours_from,
        reach,
        days,
        now,
    ))
}

/// The days holding a missing hour of `range`, in order: what a job building hours from
/// CoinGecko's points asks for (a window of whole days brings every hour of them).
pub async fn days_of_missing_hours(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    range: HourRange,
) -> sqlx::Result<Vec<NaiveDate>> {
    let runs = missing_runs(executor, symbol, range).await?;
    let mut days: Vec<NaiveDate> = runs.into_iter().flat_map(HourRange::days).collect();
    days.dedup();
    Ok(days)
}

/// Every run of missing hours of `symbol` in `range`, ascending: what a job fetches, one
/// call per run, each split by the caller into windows of at most 300 hours
/// ([`HourRange::windows`]). Hours without trades are never missing; hours before the
/// product's first candle are the caller's to leave out of `range`.
pub async fn missing_runs(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    range: HourRange,
) -> sqlx::Result<Vec<HourRange>> {
    Ok(missing(executor, symbol, range, i64::MAX).await?.listed)
}

/// The runs of hours of `range` a forced job that resumes still has to fetch: those with
/// no final candle stored since `since` (the job's creation), less the hours recorded as
/// without trades. The hours an earlier attempt of the job stored are not asked again.
pub async fn runs_not_stored_since(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    range: HourRange,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<HourRange>> {
    let query = MISSING_RUNS.replacen(
        "AND NOT provisional",
        "AND NOT provisional AND updated_at >= $5",
        1,
    );
    let rows: Vec<(Hour, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(symbol.as_str())
        .bind(range.first())
        .bind(range.last())
        .bind(i64::MAX)
        .bind(since)
        .fetch_all(executor)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(first, hours, _, _)| HourRange::starting(first, hours))
        .collect())
}

/// How many hours of `range` are missing in all: a job's `hours_missing` at its end.
pub async fn missing_hours(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    range: HourRange,
) -> sqlx::Result<i64> {
    Ok(missing(executor, symbol, range, 1).await?.hours)
}

/// How complete a range is in hours (INTERFACE, coverage with `timeframe=1h`).
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyCoverage {
    /// The hours expected, as the caller asked; `None` when none is.
    pub range: Option<HourRange>,
    pub total_expected_hours: i64,
    /// Hours stored for good (not provisional), of any source.
    pub total_stored_hours: i64,
    /// Hours recorded as without trades: accounted for, never missing.
    pub hours_without_trades: i64,
    /// The first [`MAX_LISTED_RUNS`] runs of missing hours, ascending.
    pub missing_runs: Vec<HourRange>,
    /// Every run counted, listed or not, and the hours they hold.
    pub missing_run_count: i64,
    pub missing_hours: i64,
    /// Hours accounted for (stored or without trades) over expected, in percent, rounded
    /// to two decimals; 100 when nothing is expected.
    pub coverage_percent: f64,
    /// `total_stored_hours` by source, every source listed (0 when none).
    pub hours_by_source: Vec<(PriceSource, i64)>,
    /// Stored hours whose candle is disputed.
    pub disputed_hours: i64,
}

impl HourlyCoverage {
    /// The coverage of no hour at all: complete.
    fn nothing_expected() -> Self {
        HourlyCoverage {
            range: None,
            total_expected_hours: 0,
            total_stored_hours: 0,
            hours_without_trades: 0,
            missing_runs: Vec::new(),
            missing_run_count: 0,
            missing_hours: 0,
            coverage_percent: 100.0,
            hours_by_source: PriceSource::ALL.into_iter().map(|s| (s, 0)).collect(),
            disputed_hours: 0,
        }
    }
}

/// Coverage of `symbol` over the `expected` hours (see the module's docs for who decides
/// which hours are expected; `None` when none is). Three index range scans of the coin,
/// in one snapshot.
pub async fn coverage(
    pool: &PgPool,
    symbol: Symbol,
    expected: Option<HourRange>,
) -> sqlx::Result<HourlyCoverage> {
    let Some(range) = expected else {
        return Ok(HourlyCoverage::nothing_expected());
    };
    // One snapshot for the three reads, so that the hours stored, without trades and
    // missing always add up to those expected, even while a job writes the range.
    let mut snapshot = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let by_source: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT source, count(*), count(*) FILTER (WHERE disputed) FROM hourly_prices \
         WHERE symbol = $1 AND hour BETWEEN $2 AND $3 AND NOT provisional GROUP BY source",
    )
    .bind(symbol.as_str())
    .bind(range.first())
    .bind(range.last())
    .fetch_all(&mut *snapshot)
    .await?;
    // An hour built from CoinGecko's points may be recorded without trades too (its
    // exchange had none): it counts once, as stored.
    let quiet: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM hours_without_trades n \
         WHERE n.symbol = $1 AND n.hour BETWEEN $2 AND $3 AND NOT EXISTS ( \
             SELECT 1 FROM hourly_prices p \
             WHERE p.symbol = n.symbol AND p.hour = n.hour AND NOT p.provisional)",
    )
    .bind(symbol.as_str())
    .bind(range.first())
    .bind(range.last())
    .fetch_one(&mut *snapshot)
    .await?;
    let missing = missing(&mut *snapshot, symbol, range, MAX_LISTED_RUNS).await?;
    snapshot.commit().await?;
    let expected = range.hours();
    let accounted = expected - missing.hours;
    Ok(HourlyCoverage {
        range: Some(range),
        total_expected_hours: expected,
        total_stored_hours: by_source.iter().map(|(_, n, _)| n).sum(),
        hours_without_trades: quiet,
        missing_runs: missing.listed,
        missing_run_count: missing.runs,
        missing_hours: missing.hours,
        coverage_percent: (accounted as f64 * 10_000.0 / expected as f64).round() / 100.0,
        hours_by_source: PriceSource::ALL
            .into_iter()
            .map(|source| {
                let n = by_source
                    .iter()
                    .find(|(s, _, _)| s == source.as_str())
                    .map_or(0, |(_, n, _)| *n);
                (source, n)
            })
            .collect(),
        disputed_hours: by_source.iter().map(|(_, _, d)| d).sum(),
    })
}

/// One day's hours, for the calendar: only days with something stored or recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct DayHours {
    pub date: NaiveDate,
    /// Hours stored for good.
    pub stored: i64,
    /// Hours stored provisional (they count as missing).
    pub provisional: i64,
    /// Hours recorded as without trades.
    pub without_trades: i64,
    /// Stored hours whose candle is disputed.
    pub disputed: i64,
    /// Of the hours expected, those stored for good or recorded as without trades, each
    /// once (an hour built from CoinGecko's points may be both): what the day's missing
    /// hours are counted from.
    pub accounted: i64,
}

/// The hours of each UTC day of `start..=end` for `symbol`, ascending, with those of
/// `expected` accounted for; a day absent from the answer has none of its 24 hours stored
/// or recorded. Days are cut in UTC whatever the session's time zone.
pub async fn hours_per_day(
    pool: &PgPool,
    symbol: Symbol,
    (start, end): (NaiveDate, NaiveDate),
    expected: Option<HourRange>,
) -> sqlx::Result<Vec<DayHours>> {
    let Some(range) = HourRange::of_days(start, end) else {
        return Ok(Vec::new());
    };
    sqlx::query_as(
        r#"
SELECT date, sum(stored)::bigint AS stored, sum(provisional)::bigint AS provisional,
       sum(without_trades)::bigint AS without_trades, sum(disputed)::bigint AS disputed,
       sum(accounted)::bigint AS accounted
FROM (
    SELECT (hour AT TIME ZONE 'UTC')::date AS date,
           count(*) FILTER (WHERE NOT provisional) AS stored,
           count(*) FILTER (WHERE provisional)     AS provisional,
           0                                       AS without_trades,
           count(*) FILTER (WHERE disputed)        AS disputed,
           0                                       AS accounted
    FROM hourly_prices WHERE symbol = $1 AND hour BETWEEN $2 AND $3
    GROUP BY 1
    UNION ALL
    SELECT (hour AT TIME ZONE 'UTC')::date, 0, 0, count(*), 0, 0
    FROM hours_without_trades WHERE symbol = $1 AND hour BETWEEN $2 AND $3
    GROUP BY 1
    UNION ALL
    SELECT (hour AT TIME ZONE 'UTC')::date, 0, 0, 0, 0, count(*)
    FROM (SELECT hour FROM hourly_prices
          WHERE symbol = $1 AND hour BETWEEN $4 AND $5 AND NOT provisional
          UNION
          SELECT hour FROM hours_without_trades WHERE symbol = $1 AND hour BETWEEN $4 AND $5
         ) expected_and_accounted
    GROUP BY 1
) per_table
GROUP BY date
ORDER BY date
"#,
    )
    .bind(symbol.as_str())
    .bind(range.first())
    .bind(range.last())
    .bind(expected.map(HourRange::first))
    .bind(expected.map(HourRange::last))
    .fetch_all(pool)
    .await
}
