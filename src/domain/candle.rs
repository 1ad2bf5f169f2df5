use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

/// One UTC day of a coin, built from CoinGecko's points of that day, and read back as
/// stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DailyCandle {
    pub date: NaiveDate,
    /// First price of the day.
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    /// Last price of the day.
    pub close: Decimal,
    /// The last 24-hour volume CoinGecko reported that day.
    pub volume: Decimal,
    /// Time of the last point used.
    pub timestamp: DateTime<Utc>,
    /// The day was not over when it was fetched, so its close and volume may still move;
    /// it counts as missing until a later run replaces it.
    pub provisional: bool,
    /// How many price points the candle was built from (about 24 from hourly data, 1
    /// from daily data); `None` for a row stored before the count was recorded.
    pub points: Option<i32>,
}
