//! The seam between what is stored and what is exported: a stream of [`Candle`]s per coin
//! and timeframe, ascending and without duplicates, provisional periods left out and
//! missing ones absent. Every format is written from it, so a new timeframe is one reader
//! here and nothing elsewhere.

use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::PgPool;

use crate::domain::{Symbol, Timeframe};
use crate::store::daily_prices::{self, FinalDay};

/// One candle as every format writes it: prices and volume as float64, as backtesters
/// read them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candle {
    /// When the period starts, UTC.
    pub start: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// In USD, as stored; what it measures depends on `source` (INTERFACE.md).
    pub volume: f64,
    /// Where the candle came from, as the API spells it.
    pub source: &'static str,
    /// Hours only: whether CoinGecko's price in the period lies outside the candle's
    /// low–high band by more than the allowed deviation. `None` for days.
    pub disputed: Option<bool>,
}

impl From<FinalDay> for Candle {
    fn from(day: FinalDay) -> Self {
        Candle {
            start: day.date.and_time(chrono::NaiveTime::MIN).and_utc(),
            open: day.open,
            high: day.high,
            low: day.low,
            close: day.close,
            volume: day.volume,
            source: day.source.as_str(),
            disputed: None,
        }
    }
}

/// The candles of one coin, as the database sends them.
pub type CandleStream<'a> = BoxStream<'a, sqlx::Result<Candle>>;

/// Which days to export: from `start` to `end` (UTC days, inclusive); `None` on a side
/// means every stored row on that side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

/// A timeframe whose candles are not stored: hourly candles come with issue 26.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "hours are not stored yet: this release keeps daily candles only, so there are no {0} candles to export; use 1d"
)]
pub struct HoursNotStored(pub Timeframe);

/// How the candles of a timeframe are read.
pub type Reader = for<'a> fn(&'a PgPool, Symbol, Span) -> CandleStream<'a>;

/// The reader of `timeframe`'s candles, or why there is none. Asked once before anything
/// is written, so that an export that cannot be done is refused whole.
pub fn candles(timeframe: Timeframe) -> Result<Reader, HoursNotStored> {
    match timeframe {
        Timeframe::Day => Ok(days),
        Timeframe::FourHours | Timeframe::Hour => Err(HoursNotStored(timeframe)),
    }
}

fn days(pool: &PgPool, symbol: Symbol, span: Span) -> CandleStream<'_> {
    daily_prices::stream_final(pool, symbol, span.start, span.end)
        .map(|day| day.map(Candle::from))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_read_and_hours_are_refused_until_they_are_stored() {
        assert!(candles(Timeframe::Day).is_ok());
        for timeframe in [Timeframe::Hour, Timeframe::FourHours] {
            let refused = candles(timeframe).expect_err("refused");
            assert!(
                refused.to_string().starts_with("hours are not stored yet"),
                "{refused}"
            );
        }
    }
}
