//! `coingecko_call_budget`: the call budgets shared by every process on this database, as
//! GCRA state in one row per source and key (see the migrations; the table's name is
//! from the time CoinGecko was the only source).

use std::time::Duration;

use chrono::{DateTime, Utc};
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
    let budget = Budget {
        source,
        key_fingerprint,
        interval,
        calls_per_minute,
    };
    Ok(budget.slot(pool, None).await?.wait)
}

/// One source's and key's budget, as a caller takes slots of it.
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    pub source: PriceSource,
    pub key_fingerprint: &'a str,
    pub interval: Duration,
    pub calls_per_minute: u32,
}

/// A slot of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// When it begins, by the database's clock.
    pub begins: DateTime<Utc>,
    /// How long from now until it begins.
    pub wait: Duration,
}

impl Budget<'_> {
    /// Takes the next slot (see [`take_source_slot`]). With `instead_of`, the slot replaces
    /// that one, which the caller let pass without a call: the call is counted once in
    /// `granted`, and the slot it did not use leaves `recent_slots`.
    pub async fn slot(&self, pool: &PgPool, instead_of: Option<Slot>) -> sqlx::Result<Slot> {
        let (begins, wait_secs): (DateTime<Utc>, f64) = sqlx::query_as(
            "WITH clock AS (SELECT clock_timestamp() AS now) \
             INSERT INTO coingecko_call_budget AS b (key_fingerprint, tat, granted, calls_per_minute, source, recent_slots) \
             SELECT $1, clock.now + make_interval(secs => $2), 1, $3, $4, ARRAY[clock.now] FROM clock \
             ON CONFLICT (source, key_fingerprint) DO UPDATE \
             SET tat = greatest(b.tat, (SELECT now FROM clock)) + make_interval(secs => $2), \
                 granted = b.granted + CASE WHEN $5::timestamptz IS NULL THEN 1 ELSE 0 END, \
                 recent_slots = array_remove(ARRAY(SELECT s FROM unnest(b.recent_slots) AS s \
                                                   WHERE s > (SELECT now FROM clock) - interval '60 seconds'), \
                                             $5::timestamptz) \
                                || greatest(b.tat, (SELECT now FROM clock)), \
                 calls_per_minute = $3 \
             RETURNING b.tat - make_interval(secs => $2), \
                       greatest(0, extract(epoch FROM b.tat - make_interval(secs => $2) - clock_timestamp()))::float8",
        )
        .bind(self.key_fingerprint)
        .bind(self.interval.as_secs_f64())
        .bind(i32::try_from(self.calls_per_minute).unwrap_or(i32::MAX))
        .bind(self.source.as_str())
        .bind(instead_of.map(|slot| slot.begins))
        .fetch_one(pool)
        .await?;
        Ok(Slot {
            begins,
            wait: Duration::try_from_secs_f64(wait_secs).unwrap_or_default(),
        })
    }
}

/// Holds back the next slot of `source`'s budget of `key_fingerprint`, for every process,
/// until `pause` from now (by the database's clock): the source said to wait (a 429), and
/// the others' calls meanwhile would be refused too. Slots already handed out are kept.
/// False when the budget has no row (no slot was ever taken of it: nobody called).
pub async fn hold_back(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
    pause: Duration,
) -> sqlx::Result<bool> {
    let held = sqlx::query(
        "UPDATE coingecko_call_budget \
         SET tat = greatest(tat, clock_timestamp() + make_interval(secs => $3)) \
         WHERE source = $1 AND key_fingerprint = $2",
    )
    .bind(source.as_str())
    .bind(key_fingerprint)
    .bind(pause.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(held.rows_affected() > 0)
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
