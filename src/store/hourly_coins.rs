//! The hourly side of `coins`: whether a coin keeps hours (`hourly`), where its product's
//! hourly candles begin (`coinbase_hours_from`), read with the coin's kept figures
//! ([`super::hourly_figures`]) in one query, by the coin or for a page of coins.

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, PgPool, Row};

use super::decode::refused;
use super::hourly_figures::{self, HourlyFigures};
use crate::domain::{Hour, Symbol};

/// A coin as far as its hours go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyCoin {
    pub symbol: Symbol,
    /// Whether the coin keeps hourly candles.
    pub hourly: bool,
    /// Its product has no hourly candle before this hour: no call is spent on earlier ones.
    pub coinbase_hours_from: Option<Hour>,
    pub figures: HourlyFigures,
}

impl FromRow<'_, PgRow> for HourlyCoin {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let symbol: String = row.try_get("symbol")?;
        Ok(HourlyCoin {
            symbol: Symbol::parse(&symbol).map_err(|e| refused("symbol", e))?,
            hourly: row.try_get("hourly")?,
            coinbase_hours_from: row.try_get("coinbase_hours_from")?,
            figures: HourlyFigures::from_row(row)?,
        })
    }
}

/// The coin and its figures, one primary-key probe in each table.
fn select(filter: &str) -> String {
    format!(
        "SELECT c.symbol, c.hourly, c.coinbase_hours_from, {} \
         FROM coins c LEFT JOIN hourly_figures f ON f.symbol = c.symbol {filter} ORDER BY c.symbol",
        hourly_figures::COLUMNS
    )
}

/// The coin's hourly side; `None` when it is not registered.
pub async fn get(pool: &PgPool, symbol: Symbol) -> sqlx::Result<Option<HourlyCoin>> {
    sqlx::query_as(sqlx::AssertSqlSafe(select("WHERE c.symbol = $1")))
        .bind(symbol.as_str())
        .fetch_optional(pool)
        .await
}

/// The hourly side of each of `symbols` that is registered, by symbol: for a page of the
/// coin list, one query however many hours each coin has.
pub async fn of_coins(pool: &PgPool, symbols: &[Symbol]) -> sqlx::Result<Vec<HourlyCoin>> {
    let symbols: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(select("WHERE c.symbol = ANY($1)")))
        .bind(symbols)
        .fetch_all(pool)
        .await
}

/// Every coin that keeps hours, by symbol: what a tick of the schedule looks at.
pub async fn hourly(pool: &PgPool) -> sqlx::Result<Vec<HourlyCoin>> {
    sqlx::query_as(sqlx::AssertSqlSafe(select("WHERE c.hourly")))
        .fetch_all(pool)
        .await
}

/// Turns the coin's hours on or off; returns whether they were on before, `None` when the
/// symbol is not registered. Turning them off keeps every stored hour.
pub async fn set_hourly(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    hourly: bool,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "UPDATE coins n SET hourly = $2, updated_at = now() \
         FROM coins o WHERE n.symbol = $1 AND o.symbol = n.symbol RETURNING o.hourly",
    )
    .bind(symbol.as_str())
    .bind(hourly)
    .fetch_optional(executor)
    .await
}
