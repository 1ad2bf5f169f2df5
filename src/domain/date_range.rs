use chrono::{NaiveDate, Utc};

use super::{BEFORE_ANY_COIN, Coin, Symbol};

/// The longest range one job may cover: four years, one of them a leap year.
pub const MAX_RANGE_DAYS: i64 = 1461;

/// Today's date in UTC: the last day a range may reach.
pub fn today_utc() -> NaiveDate {
    Utc::now().date_naive()
}

/// `first..=last` cut into consecutive runs of at most `days` days (at least 1), oldest
/// first, each as its first and last day: the fewest calls of that size that cover it.
/// Empty when `last` is before `first`.
pub fn day_runs(first: NaiveDate, last: NaiveDate, days: u32) -> Vec<(NaiveDate, NaiveDate)> {
    let mut runs = Vec::new();
    let mut from = first;
    while from <= last {
        let to = from
            .checked_add_days(chrono::Days::new(u64::from(days.max(1)) - 1))
            .map_or(last, |to| to.min(last));
        runs.push((from, to));
        match to.succ_opt() {
            Some(next) => from = next,
            None => break,
        }
    }
    runs
}

/// An inclusive range of UTC days that a job may ask for: ordered, not in the future, at
/// most [`MAX_RANGE_DAYS`] long, and not before the coin's first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    start: NaiveDate,
    end: NaiveDate,
}

/// Why a range was refused; each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error(
        "end_date {end} is before start_date {start}: swap them or pick an end on or after the start"
    )]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error(
        "end_date {end} is in the future (today is {today} UTC): pick an end on or before today"
    )]
    EndInFuture { end: NaiveDate, today: NaiveDate },
    #[error(
        "the range covers {days} days but at most {MAX_RANGE_DAYS} are allowed: split it into several jobs"
    )]
    TooLong { days: i64 },
    #[error(
        "start_date {start} is before {symbol}'s first day of data, {first_day}: start on or after {first_day}"
    )]
    BeforeFirstDay {
        start: NaiveDate,
        symbol: Symbol,
        first_day: NaiveDate,
    },
    /// The coin's first day is not known (it was registered under a plan that did not
    /// reach it), but no coin has a price before Bitcoin's first block.
    #[error(
        "start_date {start} is before any coin had a price (Bitcoin's first block, {BEFORE_ANY_COIN}): start on or after {BEFORE_ANY_COIN}"
    )]
    BeforeAnyCoin { start: NaiveDate },
}

impl RangeError {
    /// The stable snake_case code that API error bodies carry.
    pub fn code(&self) -> &'static str {
        match self {
            RangeError::EndBeforeStart { .. } => "end_before_start",
            RangeError::EndInFuture { .. } => "end_in_future",
            RangeError::TooLong { .. } => "range_too_long",
            RangeError::BeforeFirstDay { .. } | RangeError::BeforeAnyCoin { .. } => {
                "before_first_day"
            }
        }
    }
}

impl DateRange {
    /// Parses a requested range for `coin`, judged against `today` (UTC).
    pub fn for_coin(
        coin: &Coin,
        start: NaiveDate,
        end: NaiveDate,
        today: NaiveDate,
    ) -> Result<Self, RangeError> {
        let days = (end - start).num_days() + 1;
        if end >= start && end <= today && days > MAX_RANGE_DAYS {
            return Err(RangeError::TooLong { days });
        }
        Self::to_keep(coin, start, end, today)
    }

    /// The range of a job that keeps a tracked coin's days: the rules of [`for_coin`](Self::for_coin)
    /// but its length, since a coin tracked from years back may miss more than
    /// [`MAX_RANGE_DAYS`] days, and one job of [`MAX_RANGE_DAYS`] at a time would never
    /// reach the older ones (the newest, yesterday, is missing at every tick). The job asks
    /// only for the missing days, and fills hours of its newest [`MAX_RANGE_DAYS`] only
    /// ([`days_of_hours`](Self::days_of_hours)).
    pub fn to_keep(
        coin: &Coin,
        start: NaiveDate,
        end: NaiveDate,
        today: NaiveDate,
    ) -> Result<Self, RangeError> {
        if end < start {
            return Err(RangeError::EndBeforeStart { start, end });
        }
        if end > today {
            return Err(RangeError::EndInFuture { end, today });
        }
        match coin.first_day {
            Some(first_day) if start < first_day => Err(RangeError::BeforeFirstDay {
                start,
                symbol: coin.symbol,
                first_day,
            }),
            // A job would spend calls on centuries no source has.
            None if start < BEFORE_ANY_COIN => Err(RangeError::BeforeAnyCoin { start }),
            _ => Ok(DateRange { start, end }),
        }
    }

    /// A range read back from storage, where it was validated when the job was made;
    /// only the order is checked again (the table enforces it too).
    pub fn stored(start: NaiveDate, end: NaiveDate) -> Option<Self> {
        (start <= end).then_some(DateRange { start, end })
    }

    pub fn start(&self) -> NaiveDate {
        self.start
    }

    pub fn end(&self) -> NaiveDate {
        self.end
    }

    /// Number of days, both ends included.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    /// The first day of the range a coin whose first day is `first_day` can have: the
    /// range's start, or that day when later (a job the schedule queued before the coin's
    /// first day was known starts earlier).
    pub fn first_day_of(&self, first_day: Option<NaiveDate>) -> NaiveDate {
        first_day.map_or(self.start, |first| first.max(self.start))
    }

    /// The days whose hours a job of this range fills: its newest [`MAX_RANGE_DAYS`], so
    /// every day of a range the API accepts. Only a tracked coin's job reaches further back
    /// ([`to_keep`](Self::to_keep)), and the hours a coin keeps go back no further.
    pub fn days_of_hours(&self) -> (NaiveDate, NaiveDate) {
        let earliest = self
            .end
            .checked_sub_days(chrono::Days::new(MAX_RANGE_DAYS as u64 - 1))
            .unwrap_or(self.start);
        (self.start.max(earliest), self.end)
    }
}

/// A day written exactly `YYYY-MM-DD`, with a four-digit year: the one shape the API and
/// the command line accept (chrono alone also reads signed and five-digit years, beyond
/// what PostgreSQL's `date` holds). The error says what was given and what is wanted.
pub fn parse_day(value: &str) -> Result<NaiveDate, String> {
    let well_formed = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(date) if well_formed => Ok(date),
        _ => Err(format!("{value:?} is not a day written as YYYY-MM-DD")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::day;

    const TODAY: &str = "2026-11-28";

    fn range(start: &str, end: &str) -> Result<DateRange, RangeError> {
        DateRange::for_coin(&Coin::bitcoin(), day(start), day(end), day(TODAY))
    }

    #[test]
    fn a_single_day_and_four_full_years_are_accepted() {
        assert_eq!(range("2026-11-28", "2026-11-28").unwrap().days(), 1);
        assert_eq!(range("2022-11-29", "2026-11-28").unwrap().days(), 1461);
    }

    #[test]
    fn each_broken_rule_has_its_own_error() {
        assert_eq!(
            range("2024-02-02", "2024-02-01").unwrap_err().code(),
            "end_before_start"
        );
        assert_eq!(
            range("2026-11-01", "2026-11-29").unwrap_err().code(),
            "end_in_future"
        );
        assert_eq!(
            range("2022-11-28", "2026-11-28").unwrap_err(),
            RangeError::TooLong { days: 1462 }
        );
        assert_eq!(
            range("2013-04-27", "2013-05-01").unwrap_err().code(),
            "before_first_day"
        );
        assert!(range("2013-04-28", "2013-05-01").is_ok());
    }

    #[test]
    fn a_coin_whose_first_day_is_not_known_starts_no_earlier_than_any_coin() {
        let unknown = Coin {
            first_day: None,
            ..Coin::bitcoin()
        };
        let of = |start: &str, end: &str| {
            DateRange::for_coin(&unknown, day(start), day(end), day(TODAY))
        };
        let refused = of("0001-01-01", "0004-12-30").unwrap_err();
        assert_eq!(refused.code(), "before_first_day");
        assert_eq!(
            refused.to_string(),
            "start_date 0001-01-01 is before any coin had a price (Bitcoin's first block, 2009-01-03): start on or after 2009-01-03"
        );
        assert!(of("2009-01-02", "2009-01-05").is_err());
        assert!(of("2009-01-03", "2009-01-05").is_ok());
    }

    #[test]
    fn messages_say_what_to_do() {
        let message = range("2013-01-01", "2013-05-01").unwrap_err().to_string();
        assert_eq!(
            message,
            "start_date 2013-01-01 is before BTC's first day of data, 2013-04-28: start on or after 2013-04-28"
        );
    }
}
