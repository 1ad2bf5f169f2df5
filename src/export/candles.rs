//! The seam between what is stored and what is exported: a stream of [`Candle`]s per coin
//! and timeframe, ascending and without duplicates, provisional periods left out and
//! missing ones absent. Every format is written from it: days, hours, and `4h` blocks made
//! from the hours as the API's reads make them.

use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::PgPool;

use crate::domain::{Hour, Symbol, Timeframe};
use crate::store::daily_prices::{self, FinalDay};
use crate::store::final_hours::{self, FinalPeriod, HourSpan};

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

/// How the candles of a timeframe are read.
pub type Reader = for<'a> fn(&'a PgPool, Symbol, Span) -> CandleStream<'a>;

/// The reader of `timeframe`'s candles.
pub fn candles(timeframe: Timeframe) -> Reader {
    match timeframe {
        Timeframe::Day => days,
        Timeframe::FourHours => blocks,
        Timeframe::Hour => hours,
    }
}

fn days(pool: &PgPool, symbol: Symbol, span: Span) -> CandleStream<'_> {
    daily_prices::stream_final(pool, symbol, span.start, span.end)
        .map(|day| day.map(Candle::from))
        .boxed()
}

fn hours(pool: &PgPool, symbol: Symbol, span: Span) -> CandleStream<'_> {
    final_hours::stream_hours(pool, symbol, span.hours())
        .map(|hour| hour.map(Candle::from))
        .boxed()
}

/// `4h` blocks made from the stored hours, as the API's `4h` reads make them; a block
/// that holds a provisional hour, or is not over, is left out.
fn blocks(pool: &PgPool, symbol: Symbol, span: Span) -> CandleStream<'_> {
    final_hours::stream_blocks(pool, symbol, span.hours(), Utc::now())
        .map(|block| block.map(Candle::from))
        .boxed()
}

impl Span {
    /// The hours of the span's days: from 00:00 of its first day to 23:00 of its last.
    fn hours(self) -> HourSpan {
        HourSpan {
            first: self.start.map(Hour::first_of),
            last: self.end.map(Hour::last_of),
        }
    }
}

impl From<FinalPeriod> for Candle {
    fn from(period: FinalPeriod) -> Self {
        Candle {
            start: period.start.start(),
            open: period.open,
            high: period.high,
            low: period.low,
            close: period.close,
            volume: period.volume,
            source: period.source.as_str(),
            disputed: Some(period.disputed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::day;

    #[test]
    fn an_hourly_span_runs_from_the_first_days_midnight_to_the_last_days_last_hour() {
        let span = Span {
            start: Some(day("2024-01-01")),
            end: Some(day("2024-01-02")),
        };
        let hours = span.hours();
        assert_eq!(hours.first, Some(Hour::first_of(day("2024-01-01"))));
        assert_eq!(
            hours.last.map(Hour::start),
            Some("2024-01-02T23:00:00Z".parse().unwrap())
        );
        assert_eq!(Span::default().hours(), HourSpan::default());
    }
}
