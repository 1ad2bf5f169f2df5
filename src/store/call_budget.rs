//! `coingecko_call_budget`: the call budgets shared by every process on this database, as
//! GCRA state in one row per source and key (see the migrations; the table's name is
//! from the time CoinGecko was the only source).

use std::time::Duration;

use sqlx::PgPool;

use crate::domain::PriceSource;

/// Takes the next slot of CoinGecko's budget of `key_fingerprint`: see [`take_source_slot`].
pub async fn take_slot(
    pool: &PgPool,
    key_fingerprint: &str,
    interval: Duration,
    calls_per_minute: u32,
) -> sqlx::Result<Duration> {
    take_source_slot(
        pool,
        PriceSource::CoinGecko,
        key_fingerprint,
        interval,
        calls_per_minute,
    )
    .await
}

/// Takes the next slot of the budget of `source` and
/// `key_fingerprint`, `interval` after the one before (or now, when the budget is idle),
/// and returns how long to wait for it.
///
/// The wait is computed with the database's clock, so processes on machines whose
/// clocks disagree still space their calls by the same timeline.
pub async fn take_source_slot(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
    interval: Duration,
    calls_per_minute: u32,
) -> sqlx::Result<Duration> {
    let wait_secs: f64 = sqlx::query_scalar(
        "INSERT INTO coingecko_call_budget AS b (key_fingerprint, tat, granted, calls_per_minute, source, recent_slots) \
         VALUES ($1, clock_timestamp() + make_interval(secs => $2), 1, $3, $4, ARRAY[clock_timestamp()]) \
         ON CONFLICT (source, key_fingerprint) DO UPDATE \
         SET tat = greatest(b.tat, clock_timestamp()) + make_interval(secs => $2), \
             granted = b.granted + 1, \
             recent_slots = ARRAY(SELECT s FROM unnest(b.recent_slots) AS s \
                                  WHERE s > clock_timestamp() - interval '60 seconds') \
                            || greatest(b.tat, clock_timestamp()), \
             calls_per_minute = $3 \
         RETURNING greatest(0, extract(epoch FROM b.tat - make_interval(secs => $2) - clock_timestamp()))::float8",
    )
    .bind(key_fingerprint)
    .bind(interval.as_secs_f64())
    .bind(i32::try_from(calls_per_minute).unwrap_or(i32::MAX))
    .bind(source.as_str())
    .fetch_one(pool)
    .await?;
    Ok(Duration::try_from_secs_f64(wait_secs).unwrap_or_default())
}

/// The slots of `source`'s budget of `key_fingerprint` that began in the last 60 seconds,
/// taken by any process on the database.
pub async fn calls_in_the_last_minute(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM coingecko_call_budget AS b, unnest(b.recent_slots) AS s \
         WHERE b.source = $1 AND b.key_fingerprint = $2 \
           AND s <= clock_timestamp() AND s > clock_timestamp() - interval '60 seconds'",
    )
    .bind(source.as_str())
    .bind(key_fingerprint)
    .fetch_one(pool)
    .await
}

/// One key's budget as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetFigures {
    pub key_fingerprint: String,
    /// Slots handed out so far, over every process.
    pub granted: i64,
    /// The budget per minute the last caller used.
    pub calls_per_minute: i32,
    /// How far ahead of now slots are already handed out: 0 when the budget has room.
    pub backlog: Duration,
}

/// Every key's budget of CoinGecko.
pub async fn figures(pool: &PgPool) -> sqlx::Result<Vec<BudgetFigures>> {
    source_figures(pool, PriceSource::CoinGecko).await
}

/// Every key's budget of `source`.
pub async fn source_figures(
    pool: &PgPool,
    source: PriceSource,
) -> sqlx::Result<Vec<BudgetFigures>> {
    let rows: Vec<(String, i64, i32, f64)> = sqlx::query_as(
        "SELECT key_fingerprint, granted, calls_per_minute, \
                greatest(0, extract(epoch FROM tat - clock_timestamp()))::float8 \
         FROM coingecko_call_budget WHERE source = $1 ORDER BY key_fingerprint",
    )
    .bind(source.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(key_fingerprint, granted, calls_per_minute, backlog)| BudgetFigures {
                key_fingerprint,
                granted,
                calls_per_minute,
                backlog: Duration::try_from_secs_f64(backlog).unwrap_or_default(),
            },
        )
        .collect())
}
