//! `hours_without_trades`: the hours a coin's exchange product published no candle for.
//! Such an hour is never missing and never costs a call again; what the product taught is
//! forgotten when the coin's product changes (a trigger on `coins`, see the migration).

use sqlx::{PgExecutor, Postgres, Transaction};

use crate::domain::{Hour, HourRange, Symbol};

/// Records `hours` of `symbol` as without trades, in the caller's transaction (the one that
/// stores the window they were learned from, beside its checkpoint). An hour that has a
/// final candle stored, from either source, is not recorded (it had trades, and counting
/// it twice would break coverage's sums); one already recorded stays as it is. Only hours that were over when the window was fetched belong here
/// ([`crate::domain::Hours::without_candles`]). Returns how many were recorded.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    symbol: Symbol,
    hours: &[Hour],
) -> sqlx::Result<u64> {
    if hours.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(
        "INSERT INTO hours_without_trades (symbol, hour) \
         SELECT $1, h FROM UNNEST($2::timestamptz[]) AS h \
         WHERE NOT EXISTS (SELECT 1 FROM hourly_prices p \
                           WHERE p.symbol = $1 AND p.hour = h AND NOT p.provisional) \
         ORDER BY h \
         ON CONFLICT (symbol, hour) DO NOTHING",
    )
    .bind(symbol.as_str())
    .bind(hours)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

/// How many hours of `range` are recorded as without trades: a job's
/// `hours_without_trades`.
pub async fn count(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    range: HourRange,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM hours_without_trades WHERE symbol = $1 AND hour BETWEEN $2 AND $3",
    )
    .bind(symbol.as_str())
    .bind(range.first())
    .bind(range.last())
    .fetch_one(executor)
    .await
}
