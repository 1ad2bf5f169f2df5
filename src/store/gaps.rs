//! Which days of a range are missing, and how complete a range is.
//!
//! A day is missing when it has no row or only a provisional one. The final days come
//! from one index range scan of the table's primary key, as offsets from the range's
//! first day, and the missing ones are made from them in Rust.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::domain::{Coin, PlanReach, PriceSource, Symbol};

/// The rows of symbol `$1` in `$2..=$3` stored for good (not provisional).
const FINAL_ROWS: &str = "SELECT date, source FROM daily_prices WHERE symbol = $1 AND date BETWEEN $2 AND $3 AND NOT provisional";

/// The gap query: the final days of `$2..=$3` for symbol `$1`, as offsets from `$2`, in no
/// set order; [`missing_days`] makes the missing days from them. Against anti-joining a
/// `generate_series` calendar to the primary key it takes under half the time (measured:
/// 1.0 ms to 0.5 ms for 4 of 20 stored years, 4.2 ms to 1.8 ms for 20). Public so that the
/// benchmarks can show its plan.
pub static MISSING_DAYS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT COALESCE(array_agg(date - $2::date), '{{}}') FROM ({FINAL_ROWS}) AS f")
});

/// The missing days of `symbol` in `start..=end`, ascending.
pub async fn missing_days(
    pool: &PgPool,
    symbol: Symbol,
    start: NaiveDate,
    end: NaiveDate,
) -> sqlx::Result<Vec<NaiveDate>> {
    let stored: Vec<i32> = sqlx::query_scalar(MISSING_DAYS.as_str())
        .bind(symbol.as_str())
        .bind(start)
        .bind(end)
        .fetch_one(pool)
        .await?;
    Ok(missing_among(start, end, &stored))
}

/// The days of `start..=end`, ascending, that a forced job created at `since` has still to
/// ask `source` for: those without a row written since (an earlier attempt of the job wrote
/// those), and for the second source, without CoinGecko's row, which it never replaces.
pub async fn days_to_force(
    pool: &PgPool,
    symbol: Symbol,
    (start, end): (NaiveDate, NaiveDate),
    since: DateTime<Utc>,
    source: PriceSource,
) -> sqlx::Result<Vec<NaiveDate>> {
    let done: Vec<i32> = sqlx::query_scalar(
        "SELECT COALESCE(array_agg(date - $2::date), '{}') FROM daily_prices \
         WHERE symbol = $1 AND date BETWEEN $2 AND $3 \
           AND (updated_at >= $4 OR ($5 AND source = 'coingecko'))",
    )
    .bind(symbol.as_str())
    .bind(start)
    .bind(end)
    .bind(since)
    .bind(source == PriceSource::Coinbase)
    .fetch_one(pool)
    .await?;
    Ok(missing_among(start, end, &done))
}

/// The days of `start..=end`, ascending, whose offset from `start` is not in `stored`
/// (offsets outside the range are ignored).
fn missing_among(start: NaiveDate, end: NaiveDate, stored: &[i32]) -> Vec<NaiveDate> {
    let len = usize::try_from((end - start).num_days() + 1).unwrap_or(0);
    let mut present = vec![false; len];
    for offset in stored
        .iter()
        .filter_map(|&offset| usize::try_from(offset).ok())
    {
        if let Some(day) = present.get_mut(offset) {
            *day = true;
        }
    }
    start
        .iter_days()
        .zip(present)
        .filter_map(|(day, present)| (!present).then_some(day))
        .collect()
}

/// How complete a range is.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub symbol: Symbol,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub total_expected_days: i64,
    pub total_stored_days: i64,
    /// Missing days the plan serves, ascending.
    pub gap_dates: Vec<NaiveDate>,
    /// Missing days older than the plan's reach: not gaps, since no job can fetch them
    /// with this key.
    pub out_of_plan_days: i64,
    /// The oldest day the plan serves, when it has a limit.
    pub plan_first_day: Option<NaiveDate>,
    /// The days of `total_stored_days` by the source they came from, every source
    /// listed (0 when none).
    pub days_by_source: Vec<(PriceSource, i64)>,
    /// Stored over expected, in percent, rounded to two decimals.
    pub coverage_percent: f64,
}

/// What [`coverage`] reads: the final days (as the gap query gives them) and their count
/// by source, in one statement, so that both come from one snapshot and the stored days by
/// source always add up to the days not missing, even while a job writes the range.
static COVERAGE_DAYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH f AS ({FINAL_ROWS}), \
              by_source AS (SELECT source, count(*) AS days FROM f GROUP BY source) \
         SELECT COALESCE((SELECT array_agg(date - $2::date) FROM f), '{{}}') AS stored, \
                ARRAY(SELECT source FROM by_source ORDER BY source) AS sources, \
                ARRAY(SELECT days FROM by_source ORDER BY source) AS days"
    )
});

/// Coverage of `coin` over `start..=end`, judged on `today`; days before the coin's
/// first day are not expected, since no source has them, nor days after today (as
/// `/api/v1/days` marks them `-`: no job could fetch them). Missing days older than the
/// plan's `reach` are counted apart from the gaps.
pub async fn coverage(
    pool: &PgPool,
    coin: &Coin,
    reach: PlanReach,
    today: NaiveDate,
    start: NaiveDate,
    end: NaiveDate,
) -> sqlx::Result<Coverage> {
    let from = coin.first_day.map_or(start, |first| start.max(first));
    let end_expected = end.min(today);
    let (expected, missing, by_source) = if from > end_expected {
        (0, Vec::new(), Vec::new())
    } else {
        let (stored, sources, days): (Vec<i32>, Vec<String>, Vec<i64>) =
            sqlx::query_as(COVERAGE_DAYS.as_str())
                .bind(coin.symbol.as_str())
                .bind(from)
                .bind(end_expected)
                .fetch_one(pool)
                .await?;
        let by_source: Vec<(String, i64)> = sources.into_iter().zip(days).collect();
        let missing = missing_among(from, end_expected, &stored);
        ((end_expected - from).num_days() + 1, missing, by_source)
    };
    let days_by_source = PriceSource::each_counted(&by_source);
    let stored = expected - missing.len() as i64;
    let (gap_dates, out_of_plan) = reach.split(missing, today);
    let coverage_percent = if expected == 0 {
        100.0
    } else {
        (stored as f64 * 10_000.0 / expected as f64).round() / 100.0
    };
    Ok(Coverage {
        symbol: coin.symbol,
        start,
        end,
        total_expected_days: expected,
        total_stored_days: stored,
        gap_dates,
        out_of_plan_days: out_of_plan.len() as i64,
        plan_first_day: reach.first_served_day(today),
        days_by_source,
        coverage_percent,
    })
}

/// Joins ascending days into runs of consecutive days, as inclusive `(first, last)` pairs.
pub fn runs(days: &[NaiveDate]) -> Vec<(NaiveDate, NaiveDate)> {
    let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for &day in days {
        match runs.last_mut() {
            Some((_, last)) if last.succ_opt() == Some(day) => *last = day,
            _ => runs.push((day, day)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::day;

    #[test]
    fn consecutive_days_join_into_one_run_and_holes_split_them() {
        let days = [
            day("2024-01-01"),
            day("2024-01-02"),
            day("2024-01-03"),
            day("2024-01-05"),
            day("2024-02-29"),
            day("2024-03-01"),
        ];
        assert_eq!(
            runs(&days),
            vec![
                (day("2024-01-01"), day("2024-01-03")),
                (day("2024-01-05"), day("2024-01-05")),
                (day("2024-02-29"), day("2024-03-01")),
            ]
        );
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn the_missing_days_are_those_whose_offset_is_not_stored_in_any_order_within_the_range() {
        let (start, end) = (day("2024-02-27"), day("2024-03-02"));
        // Stored: 02-29 (2), 02-27 (0) and 03-02 (4), out of order; -1 and 5 lie outside.
        let missing = missing_among(start, end, &[2, -1, 0, 5, 4]);
        assert_eq!(missing, vec![day("2024-02-28"), day("2024-03-01")]);
        assert_eq!(
            missing_among(start, end, &[]),
            start.iter_days().take(5).collect::<Vec<_>>()
        );
        assert!(missing_among(end, start, &[]).is_empty(), "an empty range");
    }
}
