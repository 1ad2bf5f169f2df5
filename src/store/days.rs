//! The status of every day of a range, for the page's calendar: one query over
//! `generate_series` joined with `daily_prices`, answered as one letter per day.

use chrono::NaiveDate;
use sqlx::PgPool;

/// One letter per day, in the order of the range:
///
/// - `s` stored for good;
/// - `p` stored, provisional (the day was not over when fetched; it counts as missing);
/// - `m` missing, and the plan serves it: a gap a job can fill;
/// - `o` missing, older than the plan's reach: out of plan;
/// - `-` not expected: before the coin's first day of data, or after today.
pub const DAY_STATUSES: &str = r#"
SELECT string_agg(
         CASE
           WHEN ($4::date IS NOT NULL AND day < $4::date) OR day > $6::date THEN '-'
           WHEN p.provisional THEN 'p'
           WHEN p.provisional IS NOT NULL THEN 's'
           WHEN $5::date IS NOT NULL AND day < $5::date THEN 'o'
           ELSE 'm'
         END, '' ORDER BY day)
FROM generate_series($2::date, $3::date, interval '1 day') AS series(ts)
CROSS JOIN LATERAL (SELECT series.ts::date AS day) AS d
LEFT JOIN daily_prices p
       ON p.symbol = $1 AND p.date = d.day
      -- As in the gap query: the repeated range keeps the index scan within its ends.
      AND p.date BETWEEN $2 AND $3
"#;

/// What the calendar needs to know besides the rows.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The coin's first day of data; earlier days are not expected.
    pub first_day: Option<NaiveDate>,
    /// The oldest day the plan serves; older missing days are out of plan.
    pub plan_first_day: Option<NaiveDate>,
    /// Later days are not expected.
    pub today: NaiveDate,
}

/// The statuses of `start..=end` for `symbol`, one letter per day (see [`DAY_STATUSES`]).
pub async fn statuses(
    pool: &PgPool,
    symbol: &str,
    start: NaiveDate,
    end: NaiveDate,
    bounds: Bounds,
) -> sqlx::Result<String> {
    let statuses: Option<String> = sqlx::query_scalar(DAY_STATUSES)
        .bind(symbol)
        .bind(start)
        .bind(end)
        .bind(bounds.first_day)
        .bind(bounds.plan_first_day)
        .bind(bounds.today)
        .fetch_one(pool)
        .await?;
    Ok(statuses.unwrap_or_default())
}
