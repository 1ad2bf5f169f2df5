//! `coin_figures`: each coin's stored days, counted and bounded, kept by triggers on
//! `daily_prices` (see the migration), so that the coin list, `/metrics` and the schedule's
//! ticks cost the same per coin however much history is stored. Read here summed over the
//! sources: a day has one row whatever its source.

use std::sync::LazyLock;

use chrono::NaiveDate;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool};

use crate::domain::{BEFORE_ANY_COIN, Symbol};
use crate::store::empty_days;

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

/// What a coin's figures say of its complete days, so that the tick knows which days it
/// misses without a gap query whenever it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteDays {
    /// None stored.
    None,
    /// One unbroken run, first to last, but for days the schedule rests (CoinGecko
    /// answered them empty: see [`empty_days`]), which are not asked for.
    Run(NaiveDate, NaiveDate),
    /// A hole somewhere: only the gap query tells where.
    Broken,
}

/// A tracked coin the tick must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToLookAt {
    pub symbol: Symbol,
    pub complete: CompleteDays,
}

/// The tracked coins that need a look on `today`, by symbol, and how many coins are
/// tracked.
///
/// A tracked coin is left out, at the cost of no query of its own, when its complete
/// days are one unbroken run (as many as the days from the first to the last, counting
/// the days the schedule rests among them, [`empty_days::RESTS`]) covering
/// what it should have: from the latest of `track_since`, its first day and the plan's
/// `first_served` day (or `BEFORE_ANY_COIN` when none is known), to yesterday. Any other coin (a hole anywhere in its run, even
/// outside that range, or behind) is returned with what its figures say of its days.
pub async fn tracked_needing_a_look(
    pool: &PgPool,
    today: NaiveDate,
    first_served: Option<NaiveDate>,
) -> sqlx::Result<(i64, Vec<ToLookAt>)> {
    type Row = (
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<NaiveDate>,
        Option<NaiveDate>,
    );
    static QUERY: LazyLock<String> = LazyLock::new(|| {
        format!(
            r#"
WITH figures AS (
    SELECT symbol, sum(complete_days)::bigint AS complete,
           min(first_complete_day) AS first_complete,
           max(last_complete_day) AS last_complete
    FROM coin_figures GROUP BY symbol
),
rested AS (
    SELECT e.symbol, count(*) AS days
    FROM empty_days e JOIN figures f ON f.symbol = e.symbol
    WHERE e.date BETWEEN f.first_complete AND f.last_complete
      AND {rests}
    GROUP BY e.symbol
),
kept AS (
    SELECT c.symbol,
           greatest(c.track_since, c.first_day, $2::date, $3::date) AS start,
           f.complete + coalesce(r.days, 0) AS complete, f.first_complete, f.last_complete
    FROM coins c
    LEFT JOIN figures f ON f.symbol = c.symbol
    LEFT JOIN rested r ON r.symbol = c.symbol
    WHERE c.tracked
),
looked AS (
    SELECT symbol, complete, first_complete, last_complete FROM kept
    WHERE coalesce(start, '-infinity') <= $1::date - 1
      AND NOT coalesce(last_complete - first_complete + 1 = complete
                       AND first_complete <= coalesce(start, '-infinity')
                       AND last_complete >= $1::date - 1, FALSE)
)
SELECT (SELECT count(*) FROM kept), NULL::text, NULL::bigint, NULL::date, NULL::date
UNION ALL
SELECT NULL, symbol, complete, first_complete, last_complete FROM looked
"#,
            rests = *empty_days::RESTS
        )
    });
    let rows: Vec<Row> = sqlx::query_as(QUERY.as_str())
        .bind(today)
        .bind(first_served)
        .bind(BEFORE_ANY_COIN)
        .fetch_all(pool)
        .await?;
    let tracked = rows.iter().find_map(|(count, ..)| *count).unwrap_or(0);
    let mut coins: Vec<ToLookAt> = rows
        .into_iter()
        .filter_map(|(_, symbol, complete, first, last)| {
            let symbol = Symbol::parse(&symbol?).ok()?;
            let complete = match (complete.unwrap_or(0), first, last) {
                (0, ..) => CompleteDays::None,
                (count, Some(first), Some(last)) if (last - first).num_days() + 1 == count => {
                    CompleteDays::Run(first, last)
                }
                _ => CompleteDays::Broken,
            };
            Some(ToLookAt { symbol, complete })
        })
        .collect();
    coins.sort_by_key(|coin| coin.symbol);
    Ok((tracked, coins))
}

/// One coin's figures (all zero when it has no row).
pub async fn of(pool: &PgPool, symbol: Symbol) -> sqlx::Result<Figures> {
    of_one_coin(
        pool,
        format!("{SUMMED} WHERE symbol = $1 GROUP BY symbol"),
        symbol,
    )
    .await
}

/// The figures `query` reads for `symbol` (bound as `$1`), all zero when it reads no row:
/// a coin with nothing stored has no row of figures.
pub(crate) async fn of_one_coin<F>(pool: &PgPool, query: String, symbol: Symbol) -> sqlx::Result<F>
where
    F: for<'r> FromRow<'r, PgRow> + Default + Send + Unpin,
{
    let figures: Option<F> = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(symbol.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(figures.unwrap_or_default())
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

/// What the freshness of `/metrics` needs of every coin with a complete day stored, and of
/// every tracked coin without one whose first job is not under way (a new coin's backfill,
/// or a `track-top` import's queue, is no staleness to alert on): symbol, tracked, its last
/// complete day, and for a tracked coin without one the day before the first it keeps (the
/// latest of `track_since`, its first day and `first_served`, or [`BEFORE_ANY_COIN`]). One
/// row of figures a coin, whatever its history.
pub async fn last_complete_days(
    pool: &PgPool,
    first_served: Option<NaiveDate>,
) -> sqlx::Result<Vec<(String, bool, Option<NaiveDate>, Option<NaiveDate>)>> {
    sqlx::query_as(
        "SELECT c.symbol, c.tracked, f.last_complete_day, \
                CASE WHEN f.last_complete_day IS NULL \
                     THEN greatest(c.track_since, c.first_day, $1::date, $2::date) - 1 END \
         FROM coins c \
         LEFT JOIN (SELECT symbol, max(last_complete_day) AS last_complete_day FROM coin_figures GROUP BY symbol) f \
           ON f.symbol = c.symbol \
         WHERE f.last_complete_day IS NOT NULL \
            OR (c.tracked AND NOT EXISTS (SELECT 1 FROM ingestion_jobs j \
                                          WHERE j.symbol = c.symbol \
                                            AND j.status IN ('pending', 'running'))) \
         ORDER BY c.symbol",
    )
    .bind(first_served)
    .bind(BEFORE_ANY_COIN)
    .fetch_all(pool)
    .await
}
