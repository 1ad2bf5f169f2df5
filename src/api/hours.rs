//! The `Data` tag's hours (INTERFACE "Timeframes"): the `1h` and `4h` rows of
//! `GET /api/v1/prices` in JSON and CSV, coverage in hours, and the hours of each day that
//! the calendar shows. The handlers in `data` pick these when `timeframe` is `1h` or `4h`.

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::{Enum, Object};
use rust_decimal::Decimal;

use super::data::Source;
use super::day::Day;
use crate::domain::{BlockSource, HourRange, PriceSource};
use crate::store::hourly_coverage::{DayHours, HourlyCoverage};

/// One stored UTC hour. Prices and volume are in USD, decimal strings.
#[derive(Debug, Clone, Object)]
#[oai(rename = "HourlyPrice")]
pub struct HourlyPrice {
    /// The hour's start, RFC 3339 UTC.
    pub time: DateTime<Utc>,
    /// First price of the hour.
    pub open: Decimal,
    /// Highest price of the hour.
    pub high: Decimal,
    /// Lowest price of the hour.
    pub low: Decimal,
    /// Last price of the hour.
    pub close: Decimal,
    /// In USD, and what it measures depends on `source`. `coinbase`: what traded on
    /// Coinbase Exchange alone in the hour (its base volume × close), often 10–100× less
    /// than the whole market. `coingecko`: CoinGecko's whole-market trailing 24-hour
    /// volume (every exchange it tracks) at the hour's last point, divided by 24, an even
    /// share of the market's day rather than a measured hour. The two differ in kind:
    /// where a coin's hours change source the volume jumps, and that is no market event.
    pub volume: Decimal,
    /// Where the hour came from: `coinbase` (Coinbase Exchange's true hourly candle) or
    /// `coingecko` (built from CoinGecko's price points of the hour).
    pub source: Source,
    /// CoinGecko's price inside the hour lies outside the candle's low–high band by more
    /// than `FALLBACK_MAX_DEVIATION_PERCENT`; false when no point could check it.
    pub disputed: bool,
    /// How many of CoinGecko's points a `coingecko` hour was built from; null for an
    /// exchange candle.
    #[oai(nullable)]
    pub points: Option<i32>,
    /// The hour was not over when it was fetched: its close and volume may still change,
    /// and coverage counts it as missing until a later job replaces it.
    pub provisional: bool,
}

/// Where a `4h` block's hours came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "BlockSource", rename_all = "lowercase")]
pub enum BlockSourceName {
    /// Every hour is CoinGecko-built.
    Coingecko,
    /// Every hour is a Coinbase Exchange candle.
    Coinbase,
    /// Hours of both sources: its volume adds two different measures.
    Mixed,
}

impl From<BlockSource> for BlockSourceName {
    fn from(source: BlockSource) -> Self {
        match source {
            BlockSource::One(PriceSource::CoinGecko) => BlockSourceName::Coingecko,
            BlockSource::One(PriceSource::Coinbase) => BlockSourceName::Coinbase,
            BlockSource::Mixed => BlockSourceName::Mixed,
        }
    }
}

/// One `4h` candle, made on read from the stored hours of the block starting at 00, 04,
/// 08, 12, 16 or 20 UTC.
#[derive(Debug, Clone, Object)]
#[oai(rename = "FourHourPrice")]
pub struct FourHourPrice {
    /// The block's start, RFC 3339 UTC.
    pub time: DateTime<Utc>,
    /// The open of its first stored hour.
    pub open: Decimal,
    /// The highest high of its hours.
    pub high: Decimal,
    /// The lowest low of its hours.
    pub low: Decimal,
    /// The close of its last stored hour.
    pub close: Decimal,
    /// Its hours' volumes summed, in USD; what they measure depends on the source (see
    /// `HourlyPrice.volume`): one exchange's for `coinbase`, the market's even share for
    /// `coingecko`, a sum of the two kinds for `mixed`.
    pub volume: Decimal,
    pub source: BlockSourceName,
    /// Whether any of its hours is disputed.
    pub disputed: bool,
    /// How many of its four hours are stored: 1 to 4.
    pub hours: u8,
    /// One of its hours is provisional, the block is not over, or its later hours are not
    /// stored yet (it ends after the coin's last hour accounted for): it may still change.
    pub provisional: bool,
}

/// The CSV header of hours: INTERFACE's, with `provisional` after it as days carry it.
pub const HOURS_CSV_HEADER: &str =
    "time,open,high,low,close,volume,source,disputed,hours,provisional";

/// A run of missing hours.
#[derive(Debug, Clone, Object)]
pub struct MissingRun {
    /// Its first hour, RFC 3339 UTC.
    pub start: DateTime<Utc>,
    /// How many hours it holds.
    pub hours: i64,
}

/// Stored hours by source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Object)]
pub struct HoursBySource {
    /// Hours built from CoinGecko's points.
    pub coingecko: i64,
    /// Coinbase Exchange's hourly candles.
    pub coinbase: i64,
}

/// How complete a range is in hours (`timeframe=1h` or `4h`: `4h` candles are made of the
/// stored hours, so their coverage is the hours').
#[derive(Debug, Clone, Object)]
#[oai(rename = "HourlyCoverage")]
pub struct HourlyCoverageStats {
    /// The coin's ticker.
    pub symbol: String,
    pub start_date: Day,
    pub end_date: Day,
    /// `1h` or `4h`, as asked.
    pub timeframe: String,
    /// The first and last hour expected: from the coin's first day and where its hours
    /// begin (its Coinbase product's first hourly candle; for CoinGecko-built hours the
    /// plan's first served day) through the last complete hour. Null when none is.
    #[oai(nullable)]
    pub first_expected_hour: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub last_expected_hour: Option<DateTime<Utc>>,
    /// Hours from `first_expected_hour` to `last_expected_hour`.
    pub total_expected_hours: i64,
    /// Of those, the hours stored for good (not provisional), from either source.
    pub total_stored_hours: i64,
    /// Hours the exchange published no candle for (nothing traded): accounted for, never
    /// missing.
    pub hours_without_trades: i64,
    /// Hours neither stored for good nor without trades.
    pub missing_hours: i64,
    /// How many runs of missing hours there are, listed or not.
    pub missing_run_count: i64,
    /// The first 1000 runs of missing hours, ascending.
    pub missing_runs: Vec<MissingRun>,
    /// Stored and without-trades hours over expected, in percent, rounded to two
    /// decimals; 100 when nothing is expected.
    pub coverage_percent: f64,
    /// The stored hours by where they came from; they add up to `total_stored_hours`.
    pub hours_by_source: HoursBySource,
    /// Stored hours whose candle CoinGecko's point disputes.
    pub disputed_hours: i64,
}

impl HourlyCoverageStats {
    pub fn of(
        symbol: &str,
        (start, end): (NaiveDate, NaiveDate),
        timeframe: &str,
        coverage: HourlyCoverage,
    ) -> Self {
        let count = |wanted| {
            coverage
                .hours_by_source
                .iter()
                .find(|(source, _)| *source == wanted)
                .map_or(0, |(_, n)| *n)
        };
        HourlyCoverageStats {
            symbol: symbol.to_owned(),
            start_date: Day(start),
            end_date: Day(end),
            timeframe: timeframe.to_owned(),
            first_expected_hour: coverage.range.map(|r| r.first().start()),
            last_expected_hour: coverage.range.map(|r| r.last().start()),
            total_expected_hours: coverage.total_expected_hours,
            total_stored_hours: coverage.total_stored_hours,
            hours_without_trades: coverage.hours_without_trades,
            missing_hours: coverage.missing_hours,
            missing_run_count: coverage.missing_run_count,
            missing_runs: coverage
                .missing_runs
                .iter()
                .map(|run| MissingRun {
                    start: run.first().start(),
                    hours: run.hours(),
                })
                .collect(),
            coverage_percent: coverage.coverage_percent,
            hours_by_source: HoursBySource {
                coingecko: count(PriceSource::CoinGecko),
                coinbase: count(PriceSource::Coinbase),
            },
            disputed_hours: coverage.disputed_hours,
        }
    }
}

/// The hours of every day of a range, one number per day in each list, in the order of
/// `statuses` (the first for `start_date`), so that a calendar can show what is missing
/// of each day. A day has 24 hours, always (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Object)]
#[oai(rename = "HoursPerDay")]
pub struct HoursPerDay {
    /// Hours of the day expected (0 to 24; see `HourlyCoverage.first_expected_hour`).
    pub expected: Vec<u8>,
    /// Hours stored for good.
    pub stored: Vec<u8>,
    /// Hours stored provisional (missing until replaced).
    pub provisional: Vec<u8>,
    /// Hours without trades (accounted for).
    pub without_trades: Vec<u8>,
    /// Expected hours neither stored for good nor without trades.
    pub missing: Vec<u8>,
    /// Stored hours whose candle is disputed.
    pub disputed: Vec<u8>,
}

impl HoursPerDay {
    /// Every day of `start..=end` from the days that have hours (`rows`, ascending) and
    /// the hours `expected`.
    pub fn of(
        (start, end): (NaiveDate, NaiveDate),
        rows: &[DayHours],
        expected: Option<HourRange>,
    ) -> Self {
        let mut per_day = HoursPerDay::default();
        let mut rows = rows.iter().peekable();
        for date in start.iter_days().take_while(|d| *d <= end) {
            let row = rows.next_if(|r| r.date == date);
            let n = |f: fn(&DayHours) -> i64| row.map_or(0, f).clamp(0, 24) as u8;
            let day = HourRange::of_days(date, date);
            let wanted = match (day, expected) {
                (Some(day), Some(expected)) => day.intersect(expected).map_or(0, HourRange::hours),
                _ => 0,
            } as u8;
            per_day.expected.push(wanted);
            per_day.stored.push(n(|r| r.stored));
            per_day.provisional.push(n(|r| r.provisional));
            per_day.without_trades.push(n(|r| r.without_trades));
            per_day
                .missing
                .push(wanted.saturating_sub(n(|r| r.accounted)));
            per_day.disputed.push(n(|r| r.disputed));
        }
        per_day
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Hour, day};

    #[test]
    fn each_day_of_the_range_says_its_expected_stored_and_missing_hours() {
        let rows = [DayHours {
            date: day("2024-01-02"),
            stored: 20,
            provisional: 1,
            without_trades: 2,
            disputed: 3,
            accounted: 22,
        }];
        let expected = HourRange::new(
            Hour::first_of(day("2024-01-01")).plus(12),
            Hour::first_of(day("2024-01-03")).plus(9),
        );
        let days = HoursPerDay::of((day("2024-01-01"), day("2024-01-04")), &rows, expected);
        assert_eq!(days.expected, [12, 24, 10, 0]);
        assert_eq!(days.stored, [0, 20, 0, 0]);
        assert_eq!(days.without_trades, [0, 2, 0, 0]);
        assert_eq!(days.missing, [12, 2, 10, 0]);
        assert_eq!(days.provisional, [0, 1, 0, 0]);
        assert_eq!(days.disputed, [0, 3, 0, 0]);
    }
}
