//! What one candle request of Coinbase Exchange may ask for: a run of at most
//! [`MAX_CANDLES_PER_CALL`] candles of one [`Granularity`]. [`CandleWindow`] is such a run of
//! whole UTC days; a run of hours is an [`HourRange`] of at most as many hours
//! ([`Span::of_hours`]).

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{DailyCandle, HourRange, day_runs};

/// Coinbase answers at most this many candles per request, and refuses a longer range
/// with a 400 rather than cutting it.
pub const MAX_CANDLES_PER_CALL: u32 = 300;

/// A run of whole UTC days one candle request may ask for: 1 to
/// [`MAX_CANDLES_PER_CALL`] days, so no request can meet Coinbase's 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandleWindow {
    first: NaiveDate,
    last: NaiveDate,
}

impl CandleWindow {
    /// `None` when `last` is before `first` or the run is longer than 300 days.
    pub fn new(first: NaiveDate, last: NaiveDate) -> Option<Self> {
        let days = (last - first).num_days() + 1;
        (1..=i64::from(MAX_CANDLES_PER_CALL))
            .contains(&days)
            .then_some(Self { first, last })
    }

    /// `first..=last` cut into windows of at most 300 days, oldest first: the fewest
    /// calls that cover it. Empty when `last` is before `first`.
    pub fn split(first: NaiveDate, last: NaiveDate) -> Vec<Self> {
        day_runs(first, last, MAX_CANDLES_PER_CALL)
            .into_iter()
            .map(|(first, last)| Self { first, last })
            .collect()
    }

    pub fn first(&self) -> NaiveDate {
        self.first
    }

    pub fn last(&self) -> NaiveDate {
        self.last
    }

    /// How many days it covers (1 to 300).
    pub fn days(&self) -> u32 {
        u32::try_from((self.last - self.first).num_days() + 1).expect("1 to 300")
    }

    /// Where candles begin in this window, when its first day has none: the first day
    /// with a candle in `candles` (an answer to this window), or the day after the
    /// window when there is none. `None` when the first day has a candle. For a window
    /// that starts at (or before) the earliest day ever asked of the product, this is
    /// where the product's candles begin (`store::second_source::learn_candles_from`).
    pub fn candles_begin(&self, candles: &[DailyCandle]) -> Option<NaiveDate> {
        let first_with_candle = candles
            .iter()
            .map(|candle| candle.date)
            .filter(|day| (self.first..=self.last).contains(day))
            .min();
        match first_with_candle {
            Some(day) if day == self.first => None,
            Some(day) => Some(day),
            None => self.last.succ_opt(),
        }
    }

    /// The request's span: daily candles from 00:00:00 of the first day.
    pub(crate) fn span(&self) -> Span {
        let start = self.first.and_hms_opt(0, 0, 0).expect("midnight exists");
        Span {
            granularity: Granularity::Day,
            start: start.and_utc(),
            periods: self.days(),
        }
    }
}

/// The candle sizes the service asks Coinbase for: its `granularity`, in seconds.
/// Coinbase serves 60, 300, 900, 3600, 21600 and 86400, at most
/// [`MAX_CANDLES_PER_CALL`] candles of any size per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Daily candles, each from 00:00 UTC.
    Day,
    /// Hourly candles, each from the start of a UTC hour (`granularity=3600`).
    Hour,
}

impl Granularity {
    /// The length of one candle, as Coinbase's `granularity` says it.
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Day => 86_400,
            Granularity::Hour => 3_600,
        }
    }

    /// What one candle covers, as messages name it.
    pub fn period(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Hour => "hour",
        }
    }
}

/// What one candle request asks for: `periods` candles of `granularity` from `start`
/// (the start of a candle), 1 to [`MAX_CANDLES_PER_CALL`] of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub granularity: Granularity,
    pub start: DateTime<Utc>,
    pub periods: u32,
}

impl Span {
    /// The request for the hourly candles of `hours`; `None` when it holds more than
    /// [`MAX_CANDLES_PER_CALL`] hours, which Coinbase would refuse.
    pub fn of_hours(hours: HourRange) -> Option<Span> {
        let periods = u32::try_from(hours.hours()).ok()?;
        (periods <= MAX_CANDLES_PER_CALL).then(|| Span {
            granularity: Granularity::Hour,
            start: hours.first().start(),
            periods,
        })
    }

    /// `start` and `end` of the request: the start of the first candle to the last
    /// second of the last one, so the last candle is in the range whether Coinbase reads
    /// `end` as inclusive or not, and `(end - start) / granularity` stays under 300.
    pub fn bounds(&self) -> (String, String) {
        let length = self.granularity.seconds() * i64::from(self.periods);
        let end = self.start + chrono::Duration::seconds(length - 1);
        let iso = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        (iso(self.start), iso(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_window_holds_one_to_three_hundred_days() {
        assert!(CandleWindow::new(day(2024, 1, 1), day(2024, 1, 1)).is_some());
        let longest = CandleWindow::new(day(2024, 1, 1), day(2024, 10, 26)).unwrap();
        assert_eq!(longest.days(), 300);
        assert!(CandleWindow::new(day(2024, 1, 1), day(2024, 10, 27)).is_none());
        assert!(CandleWindow::new(day(2024, 1, 2), day(2024, 1, 1)).is_none());
    }

    #[test]
    fn a_range_splits_into_the_fewest_windows_oldest_first() {
        // 1096 days: ceil(1096 / 300) = 4 windows.
        let windows = CandleWindow::split(day(2021, 1, 1), day(2023, 12, 31));
        assert_eq!(windows.len(), 4);
        assert_eq!(windows[0].first(), day(2021, 1, 1));
        assert_eq!(windows[3].last(), day(2023, 12, 31));
        assert_eq!(windows.iter().map(CandleWindow::days).sum::<u32>(), 1095);
        for pair in windows.windows(2) {
            assert_eq!(pair[0].last().succ_opt(), Some(pair[1].first()));
        }
        assert!(CandleWindow::split(day(2024, 1, 2), day(2024, 1, 1)).is_empty());
    }

    #[test]
    fn where_candles_begin_is_read_from_an_answer_whose_first_days_are_empty() {
        let window = CandleWindow::new(day(2015, 7, 1), day(2015, 7, 31)).unwrap();
        let candle = |date| DailyCandle {
            date,
            open: rust_decimal::Decimal::ONE,
            high: rust_decimal::Decimal::ONE,
            low: rust_decimal::Decimal::ONE,
            close: rust_decimal::Decimal::ONE,
            volume: rust_decimal::Decimal::ONE,
            timestamp: Utc::now(),
            provisional: false,
            points: Some(1),
        };
        let from_the_20th = [candle(day(2015, 7, 21)), candle(day(2015, 7, 20))];
        assert_eq!(window.candles_begin(&from_the_20th), Some(day(2015, 7, 20)));
        assert_eq!(window.candles_begin(&[]), Some(day(2015, 8, 1)));
        assert_eq!(window.candles_begin(&[candle(day(2015, 7, 1))]), None);
    }

    #[test]
    fn a_span_runs_from_the_first_candles_start_to_the_last_candles_last_second() {
        let window = CandleWindow::new(day(2024, 1, 1), day(2024, 1, 31)).unwrap();
        assert_eq!(
            window.span().bounds(),
            (
                "2024-01-01T00:00:00Z".to_owned(),
                "2024-01-31T23:59:59Z".to_owned()
            )
        );
    }

    #[test]
    fn an_hourly_span_holds_at_most_three_hundred_hours_and_ends_a_second_before_the_next() {
        use crate::domain::Hour;
        let first = Hour::first_of(day(2024, 1, 1));
        let longest = HourRange::starting(first, 300).unwrap();
        let span = Span::of_hours(longest).unwrap();
        assert_eq!(span.granularity.seconds(), 3_600);
        assert_eq!(
            span.bounds(),
            (
                "2024-01-01T00:00:00Z".to_owned(),
                "2024-01-13T11:59:59Z".to_owned()
            )
        );
        assert!(Span::of_hours(HourRange::starting(first, 301).unwrap()).is_none());
    }
}
