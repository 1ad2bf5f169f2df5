//! `empty_days`: the days CoinGecko's answer made no candle of (not a single point, or
//! too few), asked at least [`OVER_FOR_DAYS`] days after they ended. Such a day is a hole
//! in CoinGecko's own data: once answered so [`ANSWERS_TO_REST`] times a day apart, the schedule's
//! jobs leave it alone until [`REST_DAYS`] days after the last answer, instead of spending
//! a window and a gap fill on it at every tick. A job asked for with the API or the CLI
//! still asks.

use std::sync::LazyLock;

use chrono::{Days, NaiveDate, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::Symbol;

/// A day is taken for a hole only when asked this many days after it ended: a recent day
/// CoinGecko has not caught up with yet is asked again at the next tick.
pub const OVER_FOR_DAYS: u64 = 2;

/// Answers without a candle after which the schedule rests a day, each at least
/// [`ANSWERS_APART_HOURS`] after the one it counts after: a day asked at two ticks, a day
/// apart, not a job's window and its gap fill minutes apart, which a short outage of
/// CoinGecko's data would both hit.
pub const ANSWERS_TO_REST: i32 = 2;

/// How far apart two answers must be to count twice.
pub const ANSWERS_APART_HOURS: i32 = 20;

/// How long the schedule rests a day after its last empty answer: a month costs it one
/// call instead of two a tick.
pub const REST_DAYS: i32 = 30;

/// Notes that CoinGecko's answer made no candle of `days` (each over for [`OVER_FOR_DAYS`]
/// days when asked), in the transaction that stores the rest of the window; a day stored
/// for good (a window of a forced job, or of hours, may cover one) is not noted. An answer
/// counts, and moves `last_answer_at`, only [`ANSWERS_APART_HOURS`] after the last one
/// counted, so that an hourly schedule's ticks count once a day too.
pub async fn note(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    days: &[NaiveDate],
) -> sqlx::Result<()> {
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO empty_days (symbol, date, answers, last_answer_at) \
         SELECT $1, d, 1, now() FROM UNNEST($2::date[]) AS d \
         WHERE NOT EXISTS (SELECT 1 FROM daily_prices p \
                           WHERE p.symbol = $1 AND p.date = d AND NOT p.provisional) \
         ORDER BY d \
         ON CONFLICT (symbol, date) DO UPDATE \
         SET answers = empty_days.answers + 1, last_answer_at = now() \
         WHERE empty_days.last_answer_at <= now() - make_interval(hours => $3)",
    )
    .bind(symbol.as_str())
    .bind(days)
    .bind(ANSWERS_APART_HOURS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether a row of `empty_days`, named `e`, rests: answered without a candle at least
/// [`ANSWERS_TO_REST`] times, the last less than [`REST_DAYS`] days ago. The one statement
/// of the rule in SQL, for [`without_resting`] and the tick's query
/// ([`crate::store::coin_figures::tracked_needing_a_look`]).
pub static RESTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "e.answers >= {ANSWERS_TO_REST} AND e.last_answer_at > now() - interval '{REST_DAYS} days'"
    )
});

/// `missing` (ascending) without the days of `symbol` the schedule rests ([`RESTS`]), and
/// those days;
/// no query when no missing day is over for long enough to have been noted.
pub async fn without_resting(
    pool: &PgPool,
    symbol: Symbol,
    missing: Vec<NaiveDate>,
) -> sqlx::Result<(Vec<NaiveDate>, Vec<NaiveDate>)> {
    // Only a day over for long enough can have been noted: yesterday, missing for every
    // coin at most ticks, costs no query.
    let noted_until = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(OVER_FOR_DAYS + 1));
    let (Some(first), Some(last), Some(noted_until)) =
        (missing.first(), missing.last(), noted_until)
    else {
        return Ok((missing, Vec::new()));
    };
    if *first > noted_until {
        return Ok((missing, Vec::new()));
    }
    static RESTING: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT e.date FROM empty_days e \
             WHERE e.symbol = $1 AND e.date BETWEEN $2 AND $3 AND {} ORDER BY e.date",
            *RESTS
        )
    });
    let resting: Vec<NaiveDate> = sqlx::query_scalar(RESTING.as_str())
        .bind(symbol.as_str())
        .bind(*first)
        .bind((*last).min(noted_until))
        .fetch_all(pool)
        .await?;
    if resting.is_empty() {
        return Ok((missing, resting));
    }
    let (rested, asked) = missing
        .into_iter()
        .partition(|day| resting.binary_search(day).is_ok());
    Ok((asked, rested))
}
