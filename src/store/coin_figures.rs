//! `coin_figures`: each coin's stored days, counted and bounded, kept by triggers on
//! `daily_prices` (see the migration), so that the coin list, `/metrics` and the schedule's
//! ticks cost the same per coin however much history is stored. Read here summed over the
//! sources: a day has one row whatever its source.

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::domain::Symbol;

/// One coin's stored days, over every source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Figures {
    /// Stored days that are not provisional.
    pub complete_days: i64,
    /// Stored days that are provisional (they count as missing).
    pub provisional_days: i64,
    /// The first stored day, provisional or not.
    pub first_day: Option<NaiveDate>,
    pub first_complete_day: Option<NaiveDate>,
    /// The latest stored day that is not provisional.
    pub last_complete_day: Option<NaiveDate>,
}

impl Figures {
    /// Whether every day of `start..=end` has a complete row, judged from the figures
    /// alone: the complete days form one unbroken run (as many as the days from the first
    /// to the last) that covers the range. `false` says only "look": a hole anywhere in the
    /// run, even outside the range, sends the caller to the gap query.
    pub fn covers(&self, start: NaiveDate, end: NaiveDate) -> bool {
        let (Some(first), Some(last)) = (self.first_complete_day, self.last_complete_day) else {
            return false;
        };
        let unbroken = (last - first).num_days() + 1 == self.complete_days;
        unbroken && first <= start && end <= last
    }
}

/// The sum over sources, per symbol, of the rows the triggers keep.
const SUMMED: &str = r#"
SELECT symbol,
       sum(complete_days)::bigint    AS complete_days,
       sum(provisional_days)::bigint AS provisional_days,
       min(first_day)                AS first_day,
       min(first_complete_day)       AS first_complete_day,
       max(last_complete_day)        AS last_complete_day
FROM coin_figures
"#;

#[derive(sqlx::FromRow)]
struct Row {
    symbol: String,
    #[sqlx(flatten)]
    figures: Figures,
}

/// Every coin's figures, by symbol; a coin that never had a row is absent (all zero).
pub async fn all(pool: &PgPool) -> sqlx::Result<HashMap<Symbol, Figures>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUMMED} GROUP BY symbol")))
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((Symbol::parse(&row.symbol).ok()?, row.figures)))
        .collect())
}

/// One coin's figures (all zero when it has no row).
pub async fn of(pool: &PgPool, symbol: Symbol) -> sqlx::Result<Figures> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SUMMED} WHERE symbol = $1 GROUP BY symbol"
    )))
    .bind(symbol.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| row.figures).unwrap_or_default())
}

/// Stored days (complete and provisional) per registered coin, 0 for a coin with none,
/// by symbol: `/metrics`' `price_history_stored_candles`.
pub async fn stored_days(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT c.symbol, coalesce(sum(f.complete_days + f.provisional_days), 0)::bigint \
         FROM coins c LEFT JOIN coin_figures f ON f.symbol = c.symbol \
         GROUP BY c.symbol ORDER BY c.symbol",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn figures(first: &str, last: &str, complete: i64) -> Figures {
        Figures {
            complete_days: complete,
            first_complete_day: Some(day(first)),
            last_complete_day: Some(day(last)),
            ..Figures::default()
        }
    }

    #[test]
    fn an_unbroken_run_that_spans_the_range_covers_it_and_a_hole_anywhere_does_not() {
        let (start, end) = (day("2026-01-10"), day("2026-01-20"));
        assert!(figures("2026-01-10", "2026-01-20", 11).covers(start, end));
        assert!(figures("2026-01-01", "2026-01-20", 20).covers(start, end));
        // One day short: a hole somewhere, maybe before the range, and the gap query finds it.
        assert!(!figures("2026-01-01", "2026-01-20", 19).covers(start, end));
        assert!(!figures("2026-01-11", "2026-01-20", 10).covers(start, end));
        assert!(!figures("2026-01-10", "2026-01-19", 10).covers(start, end));
        assert!(!Figures::default().covers(start, end));
    }
}
