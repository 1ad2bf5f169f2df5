//! `monthly_credits`: the calls of each UTC calendar month per source and key, counted over
//! every process on this database (`COINGECKO_CALLS_PER_MONTH`). One statement takes a
//! credit, and never past the limit, however many processes race for the last one.

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::domain::{CreditMonth, PriceSource};

/// Takes one credit of `month` for `source` and `key_fingerprint`: the credits used with
/// it, or `None` when `limit` are used already or the source refused a call of the month
/// for spent credits (nothing was taken). Without a limit the call is only counted.
pub async fn take(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
    month: CreditMonth,
    limit: Option<u32>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO monthly_credits AS c (source, key_fingerprint, month, used) \
         VALUES ($1, $2, $3, 1) \
         ON CONFLICT (source, key_fingerprint, month) DO UPDATE \
         SET used = c.used + 1, updated_at = now() \
         WHERE ($4::bigint IS NULL OR c.used < $4::bigint) AND c.refused_at IS NULL \
         RETURNING used",
    )
    .bind(source.as_str())
    .bind(key_fingerprint)
    .bind(month.first_day())
    .bind(limit.map(i64::from))
    .fetch_optional(pool)
    .await
}

/// A month of one source and key, over every process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonthUse {
    /// The credits used so far.
    pub used: i64,
    /// The source refused a call of the month for spent credits: none is made until the
    /// month turns.
    pub refused: bool,
}

/// `month` for `source` and `key_fingerprint`: one row read by its key.
pub async fn of_month(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
    month: CreditMonth,
) -> sqlx::Result<MonthUse> {
    let row: Option<(i64, bool)> = sqlx::query_as(
        "SELECT used, refused_at IS NOT NULL FROM monthly_credits \
         WHERE source = $1 AND key_fingerprint = $2 AND month = $3",
    )
    .bind(source.as_str())
    .bind(key_fingerprint)
    .bind(month.first_day())
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|(used, refused)| MonthUse { used, refused })
        .unwrap_or_default())
}

/// The credits of `month` used so far for `source` and `key_fingerprint`, over every
/// process: one row read by its key.
pub async fn used(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
    month: CreditMonth,
) -> sqlx::Result<i64> {
    Ok(of_month(pool, source, key_fingerprint, month).await?.used)
}

/// Notes that `source` refused a call of `month` with `key_fingerprint` because the key's
/// credits are spent (the first refusal's time is kept).
pub async fn refused(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
    month: CreditMonth,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO monthly_credits AS c (source, key_fingerprint, month, used, refused_at) \
         VALUES ($1, $2, $3, 0, now()) \
         ON CONFLICT (source, key_fingerprint, month) DO UPDATE \
         SET refused_at = coalesce(c.refused_at, now()), updated_at = now()",
    )
    .bind(source.as_str())
    .bind(key_fingerprint)
    .bind(month.first_day())
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets the credits of `month` used to `used` (tests and benchmarks that start a month
/// half spent).
pub async fn set_used(
    pool: &PgPool,
    source: PriceSource,
    key_fingerprint: &str,
    month: NaiveDate,
    used: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO monthly_credits (source, key_fingerprint, month, used) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (source, key_fingerprint, month) DO UPDATE SET used = $4, updated_at = now()",
    )
    .bind(source.as_str())
    .bind(key_fingerprint)
    .bind(month)
    .bind(used)
    .execute(pool)
    .await?;
    Ok(())
}

/// The coins the schedule keeps current (the tracked ones, and every coin that keeps hours,
/// tracked or not) by what that costs: tracked and daily only, hourly with hours from
/// Coinbase (a product set and not judged unusable, when `coinbase_on`), and hourly with
/// hours built from CoinGecko's points. One row read over `coins`.
pub async fn tracked_coins(pool: &PgPool, coinbase_on: bool) -> sqlx::Result<(i64, i64, i64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT hourly), \
                count(*) FILTER (WHERE hourly AND $1 AND coinbase_product IS NOT NULL AND fallback_usable IS NOT FALSE), \
                count(*) FILTER (WHERE hourly AND NOT ($1 AND coinbase_product IS NOT NULL AND fallback_usable IS NOT FALSE)) \
         FROM coins WHERE tracked OR hourly",
    )
    .bind(coinbase_on)
    .fetch_one(pool)
    .await
}
