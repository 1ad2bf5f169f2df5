//! The second source's data: each coin's Coinbase product and what checking it found
//! (`coins`), the rows it stored (`daily_prices.source`), and the days a job stored from
//! it (`ingestion_jobs.fallback_days`). The primary source's statements stay in their
//! table's module; those written here never replace a CoinGecko row.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::decode::{parsed, parsed_or_null};
use crate::config::FallbackSource;
use crate::domain::{
    DailyCandle, ExchangeProduct, Hour, MappingVerdict, PriceSource, ProductId, Symbol,
};

/// A coin's mapping to the second source, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    /// `None`: no second source for the coin.
    pub product: Option<ProductId>,
    /// `None` until checked, or when the sources shared no day.
    pub deviation_percent: Option<Decimal>,
    /// When the current product was checked; `None` until then.
    pub checked_at: Option<DateTime<Utc>>,
    /// Whether the second source may be used for the coin; `None` until checked.
    pub usable: Option<bool>,
    /// Why not, when `usable` is false.
    pub unusable_reason: Option<String>,
    /// The product has no candle before this day: no call is spent on earlier days.
    pub candles_from: Option<NaiveDate>,
}

impl Mapping {
    /// The product to fetch from, when one is set and its check found it usable.
    pub fn usable_product(&self) -> Option<&ProductId> {
        self.product.as_ref().filter(|_| self.usable == Some(true))
    }

    /// Whether the product is set but not checked yet: checking comes before its first row.
    pub fn needs_check(&self) -> bool {
        self.product.is_some() && self.usable.is_none()
    }

    /// What the coin has on the exchange for its hours ([`crate::domain::hourly_source`]):
    /// nothing with `FALLBACK_SOURCE=off`, which makes no Coinbase call at all, else its
    /// product as its check left it.
    pub fn exchange_product(&self, fallback: FallbackSource) -> ExchangeProduct {
        match (fallback, &self.product, self.usable) {
            (FallbackSource::Off, ..) | (_, None, _) => ExchangeProduct::None,
            (_, Some(_), None) => ExchangeProduct::Unchecked,
            (_, Some(_), Some(true)) => ExchangeProduct::Usable,
            (_, Some(_), Some(false)) => ExchangeProduct::Unusable,
        }
    }
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for Mapping {
    /// From the `coins` columns of the mapping, as named in the table.
    fn from_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        Ok(Mapping {
            product: parsed_or_null(row, "coinbase_product")?,
            deviation_percent: row.try_get("fallback_deviation_percent")?,
            checked_at: row.try_get("fallback_checked_at")?,
            usable: row.try_get("fallback_usable")?,
            unusable_reason: row.try_get("fallback_unusable_reason")?,
            candles_from: row.try_get("coinbase_candles_from")?,
        })
    }
}

/// The coin's mapping; `None` when the symbol is not registered.
pub async fn mapping(pool: &PgPool, symbol: Symbol) -> sqlx::Result<Option<Mapping>> {
    sqlx::query_as(
        "SELECT coinbase_product, fallback_deviation_percent, fallback_checked_at, \
                fallback_usable, fallback_unusable_reason, coinbase_candles_from \
         FROM coins WHERE symbol = $1",
    )
    .bind(symbol.as_str())
    .fetch_optional(pool)
    .await
}

/// Sets (or with `None` clears) the coin's product. A product that differs from the
/// stored one forgets the old one's check and where its candles begin; setting the same
/// product again keeps them. `false` when the symbol is not registered.
pub async fn set_product(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    product: Option<&ProductId>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE coins SET \
             fallback_deviation_percent = CASE WHEN coinbase_product IS DISTINCT FROM $2 THEN NULL ELSE fallback_deviation_percent END, \
             fallback_checked_at = CASE WHEN coinbase_product IS DISTINCT FROM $2 THEN NULL ELSE fallback_checked_at END, \
             fallback_usable = CASE WHEN coinbase_product IS DISTINCT FROM $2 THEN NULL ELSE fallback_usable END, \
             fallback_unusable_reason = CASE WHEN coinbase_product IS DISTINCT FROM $2 THEN NULL ELSE fallback_unusable_reason END, \
             coinbase_candles_from = CASE WHEN coinbase_product IS DISTINCT FROM $2 THEN NULL ELSE coinbase_candles_from END, \
             coinbase_product = $2, updated_at = now() \
         WHERE symbol = $1",
    )
    .bind(symbol.as_str())
    .bind(product.map(ProductId::as_str))
    .execute(executor)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records what checking `product` found, if it is still the coin's product (a `PUT`
/// may have changed it meanwhile: then nothing is written and `false` returned).
pub async fn record_check(
    pool: &PgPool,
    symbol: Symbol,
    product: &ProductId,
    verdict: &MappingVerdict,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE coins SET fallback_deviation_percent = $3, fallback_usable = $4, \
             fallback_unusable_reason = $5, fallback_checked_at = now(), updated_at = now() \
         WHERE symbol = $1 AND coinbase_product = $2",
    )
    .bind(symbol.as_str())
    .bind(product.as_str())
    .bind(verdict.deviation.map(|d| d.percent))
    .bind(verdict.usable)
    .bind(verdict.reason.as_deref())
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Where a product's candles begin, as an answer that began later than asked showed it:
/// the first day of its daily candles, or the first hour of its hourly ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandlesBegin {
    Day(NaiveDate),
    Hour(Hour),
}

impl From<NaiveDate> for CandlesBegin {
    fn from(day: NaiveDate) -> Self {
        CandlesBegin::Day(day)
    }
}

impl From<Hour> for CandlesBegin {
    fn from(hour: Hour) -> Self {
        CandlesBegin::Hour(hour)
    }
}

/// Remembers that `product` has no candle of that kind before `begin`: the bound only
/// moves later, and only while `product` is the coin's product. `false` when the coin's
/// product is another (or none).
pub async fn learn_candles_from(
    pool: &PgPool,
    symbol: Symbol,
    product: &ProductId,
    begin: impl Into<CandlesBegin>,
) -> sqlx::Result<bool> {
    let (day, hour) = match begin.into() {
        CandlesBegin::Day(day) => (Some(day), None),
        CandlesBegin::Hour(hour) => (None, Some(hour)),
    };
    // `greatest` passes over a NULL: the bound not learnt is left as it is.
    let result = sqlx::query(
        "UPDATE coins SET coinbase_candles_from = greatest(coinbase_candles_from, $3), \
             coinbase_hours_from = greatest(coinbase_hours_from, $4), updated_at = now() \
         WHERE symbol = $1 AND coinbase_product = $2",
    )
    .bind(symbol.as_str())
    .bind(product.as_str())
    .bind(day)
    .bind(hour)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The closes of `symbol` stored from `source` on its earliest `limit` days from `from`
/// on (not provisional), ascending: one side of the mapping check.
pub async fn earliest_closes(
    pool: &PgPool,
    symbol: Symbol,
    source: PriceSource,
    from: NaiveDate,
    limit: usize,
) -> sqlx::Result<Vec<(NaiveDate, Decimal)>> {
    sqlx::query_as(
        "SELECT date, close FROM daily_prices \
         WHERE symbol = $1 AND source = $2 AND date >= $3 AND NOT provisional \
         ORDER BY date LIMIT $4",
    )
    .bind(symbol.as_str())
    .bind(source.as_str())
    .bind(from)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
}

/// The closes of `symbol` stored from `source` on its latest `limit` days (not
/// provisional), ascending: the mapping check's second sample, for a product that has no
/// candle on the earliest days the plan serves (listed since, or halted then).
pub async fn latest_closes(
    pool: &PgPool,
    symbol: Symbol,
    source: PriceSource,
    limit: usize,
) -> sqlx::Result<Vec<(NaiveDate, Decimal)>> {
    let mut closes: Vec<(NaiveDate, Decimal)> = sqlx::query_as(
        "SELECT date, close FROM daily_prices \
         WHERE symbol = $1 AND source = $2 AND NOT provisional \
         ORDER BY date DESC LIMIT $3",
    )
    .bind(symbol.as_str())
    .bind(source.as_str())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    closes.reverse();
    Ok(closes)
}

/// A stored day and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedCandle {
    pub candle: DailyCandle,
    pub source: PriceSource,
}

/// The stored days of `symbol` between `start` and `end` (inclusive), ascending, each
/// with its source.
pub async fn list_sourced(
    pool: &PgPool,
    symbol: Symbol,
    start: NaiveDate,
    end: NaiveDate,
) -> sqlx::Result<Vec<SourcedCandle>> {
    use sqlx::FromRow;
    let rows = sqlx::query(
        r#"SELECT date, open, high, low, close, volume, "timestamp", provisional, points, source
           FROM daily_prices WHERE symbol = $1 AND date BETWEEN $2 AND $3 ORDER BY date"#,
    )
    .bind(symbol.as_str())
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SourcedCandle {
                candle: DailyCandle::from_row(row)?,
                source: parsed(row, "source")?,
            })
        })
        .collect()
}

/// How many days of `symbol` between `start` and `end` each source stored (provisional
/// days included), every source listed, 0 when none.
pub async fn days_by_source(
    pool: &PgPool,
    symbol: Symbol,
    start: NaiveDate,
    end: NaiveDate,
) -> sqlx::Result<Vec<(PriceSource, i64)>> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT source, count(*) FROM daily_prices \
         WHERE symbol = $1 AND date BETWEEN $2 AND $3 GROUP BY source",
    )
    .bind(symbol.as_str())
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    Ok(PriceSource::each_counted(&counts))
}

/// Counts `days` more days the job stored from the second source, in the caller's
/// transaction (the one that stored them, beside the checkpoint).
pub async fn add_fallback_days(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
    days: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE ingestion_jobs SET fallback_days = fallback_days + $2, updated_at = now() WHERE id = $1",
    )
    .bind(job_id)
    .bind(days)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The days the job stored from the second source so far.
pub async fn fallback_days(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar("SELECT fallback_days FROM ingestion_jobs WHERE id = $1")
        .bind(job_id)
        .fetch_optional(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coins_hours_see_its_product_as_its_check_left_it_and_none_with_the_fallback_off() {
        let product = ProductId::parse("ETH-USD").unwrap();
        let mapping = |product: Option<&ProductId>, usable| Mapping {
            product: product.cloned(),
            usable,
            ..Mapping::default()
        };
        let on = FallbackSource::Coinbase;
        let table = [
            (mapping(None, None), on, ExchangeProduct::None),
            (
                mapping(Some(&product), None),
                on,
                ExchangeProduct::Unchecked,
            ),
            (
                mapping(Some(&product), Some(true)),
                on,
                ExchangeProduct::Usable,
            ),
            (
                mapping(Some(&product), Some(false)),
                on,
                ExchangeProduct::Unusable,
            ),
            (
                mapping(Some(&product), Some(true)),
                FallbackSource::Off,
                ExchangeProduct::None,
            ),
        ];
        for (mapping, fallback, expected) in table {
            assert_eq!(
                mapping.exchange_product(fallback),
                expected,
                "{mapping:?} {fallback:?}"
            );
        }
    }
}
