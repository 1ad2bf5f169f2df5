//! `hourly_figures`: each coin's hours counted, bounded and checked, kept by triggers on
//! `hourly_prices` and `hours_without_trades` (see the migration), so that the coin list,
//! `/metrics` and the schedule's ticks read one row per coin however many hours are stored.

use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Row};

use crate::domain::{Hour, HourRange, Symbol};

/// One coin's hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourlyFigures {
    /// Stored hours that are not provisional.
    pub complete_hours: i64,
    /// Stored hours that are provisional (they count as missing).
    pub provisional_hours: i64,
    /// Hours recorded as without trades.
    pub hours_without_trades: i64,
    /// The first and the last hour accounted for (stored for good, or without trades).
    pub accounted: Option<HourRange>,
    /// Exchange candles with a CoinGecko point beside them.
    pub checked_hours: i64,
    /// Of those, the disputed ones: the coin's `disputed_hours`.
    pub disputed_hours: i64,
    /// The coin's `hourly_median_deviation_percent`: the median over its checked hours of
    /// the point's distance outside the band, in percent; `None` with no checked hour.
    pub median_deviation_percent: Option<Decimal>,
}

impl HourlyFigures {
    /// Whether the hours accounted for are one unbroken run from the first to the last, so
    /// that no hour between them is missing: with [`HourlyFigures::accounted`] this tells a
    /// tick, without a gap query, that a coin's hours are current.
    pub fn is_unbroken(&self) -> bool {
        self.accounted
            .is_some_and(|run| run.hours() == self.complete_hours + self.hours_without_trades)
    }

    /// Whether every hour of `range` is accounted for, known from the figures alone (an
    /// unbroken run that holds `range`); `false` means "ask the gap query", not "missing".
    pub fn covers(&self, range: HourRange) -> bool {
        self.is_unbroken()
            && self
                .accounted
                .is_some_and(|run| run.intersect(range) == Some(range))
    }
}

/// The columns of [`HourlyFigures`] as [`FromRow`] reads them, for a query that joins the
/// figures (`f`) to another table; a coin without a row reads as all zero.
pub const COLUMNS: &str = "coalesce(f.complete_hours, 0) AS complete_hours, \
     coalesce(f.provisional_hours, 0) AS provisional_hours, \
     coalesce(f.hours_without_trades, 0) AS hours_without_trades, \
     f.first_hour, f.last_hour, \
     coalesce(f.checked_hours, 0) AS checked_hours, \
     coalesce(f.disputed_hours, 0) AS disputed_hours, \
     f.median_deviation_percent";

impl FromRow<'_, PgRow> for HourlyFigures {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let first: Option<Hour> = row.try_get("first_hour")?;
        let last: Option<Hour> = row.try_get("last_hour")?;
        Ok(HourlyFigures {
            complete_hours: row.try_get("complete_hours")?,
            provisional_hours: row.try_get("provisional_hours")?,
            hours_without_trades: row.try_get("hours_without_trades")?,
            accounted: first
                .zip(last)
                .and_then(|(first, last)| HourRange::new(first, last)),
            checked_hours: row.try_get("checked_hours")?,
            disputed_hours: row.try_get("disputed_hours")?,
            median_deviation_percent: row
                .try_get::<Option<Decimal>, _>("median_deviation_percent")?
                .map(|median| median.normalize()),
        })
    }
}

/// One coin's figures (all zero when it has none).
pub async fn of(pool: &PgPool, symbol: Symbol) -> sqlx::Result<HourlyFigures> {
    let query = format!("SELECT {COLUMNS} FROM hourly_figures f WHERE f.symbol = $1");
    super::coin_figures::of_one_coin(pool, query, symbol).await
}

/// Stored hours (complete and provisional) per coin that keeps hours or has any stored, 0
/// for one with none, by symbol: `/metrics`' stored candles of the `1h` timeframe, one row
/// per coin.
pub async fn stored_hours(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT c.symbol, coalesce(f.complete_hours + f.provisional_hours, 0) \
         FROM coins c LEFT JOIN hourly_figures f ON f.symbol = c.symbol \
         WHERE c.hourly OR f.symbol IS NOT NULL ORDER BY c.symbol",
    )
    .fetch_all(pool)
    .await
}
