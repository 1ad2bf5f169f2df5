//! The UTC hour grid: an hour is the instant it starts at, a whole number of hours after
//! the Unix epoch. UTC has no daylight saving, so every day has exactly 24 of them whatever
//! the clocks of any other zone do; nothing here reads a time zone.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};

use super::DateRange;

/// Seconds in an hour: the grid's step.
pub const HOUR_SECS: i64 = 3_600;

/// Hours in a UTC day, every day.
pub const HOURS_PER_DAY: i64 = 24;

/// Hours in a block of the `4h` timeframe; blocks start at 00, 04, 08, 12, 16 and 20 UTC.
pub const HOURS_PER_BLOCK: i64 = 4;

/// The start of one UTC hour: minute, second and fraction all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hour(DateTime<Utc>);

/// A time that is not the start of a UTC hour (or no time at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not the start of a UTC hour (minute, second and fraction 0)")]
pub struct OffTheHour(pub String);

impl Hour {
    /// The hour starting exactly at `at`; any other instant is refused.
    pub fn parse(at: DateTime<Utc>) -> Result<Hour, OffTheHour> {
        if at.timestamp().rem_euclid(HOUR_SECS) == 0 && at.timestamp_subsec_nanos() == 0 {
            Ok(Hour(at))
        } else {
            Err(OffTheHour(
                at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ))
        }
    }

    /// The hour starting `secs` seconds after the Unix epoch (as Coinbase stamps a candle).
    pub fn from_unix(secs: i64) -> Result<Hour, OffTheHour> {
        let at = DateTime::from_timestamp(secs, 0)
            .ok_or_else(|| OffTheHour(format!("{secs} (seconds since 1970)")))?;
        Hour::parse(at)
    }

    /// The hour `at` falls in.
    pub fn containing(at: DateTime<Utc>) -> Hour {
        let secs = at.timestamp() - at.timestamp().rem_euclid(HOUR_SECS);
        Hour(DateTime::from_timestamp(secs, 0).expect("an earlier whole second of a valid time"))
    }

    /// 00:00 UTC of `day`: its first hour.
    pub fn first_of(day: NaiveDate) -> Hour {
        Hour(day.and_time(NaiveTime::MIN).and_utc())
    }

    /// 23:00 UTC of `day`: its last hour.
    pub fn last_of(day: NaiveDate) -> Hour {
        Hour::first_of(day).plus(HOURS_PER_DAY - 1)
    }

    /// The latest hour that is over at `now`: the one before the hour `now` falls in.
    pub fn last_complete(now: DateTime<Utc>) -> Hour {
        Hour::containing(now).plus(-1)
    }

    /// When the hour starts.
    pub fn start(self) -> DateTime<Utc> {
        self.0
    }

    /// When it ends: the next hour's start.
    pub fn end(self) -> DateTime<Utc> {
        self.0 + TimeDelta::seconds(HOUR_SECS)
    }

    /// Whether the hour is over at `now`; an hour not over makes a provisional candle.
    pub fn is_over(self, now: DateTime<Utc>) -> bool {
        self.end() <= now
    }

    /// Whether `at` lies within the hour (its start included, its end not).
    pub fn contains(self, at: DateTime<Utc>) -> bool {
        self.0 <= at && at < self.end()
    }

    pub fn unix(self) -> i64 {
        self.0.timestamp()
    }

    /// The UTC day the hour belongs to.
    pub fn date(self) -> NaiveDate {
        self.0.date_naive()
    }

    /// The hour `n` hours later (earlier when `n` is negative). Panics only beyond the
    /// year 262,000, where chrono ends.
    pub fn plus(self, n: i64) -> Hour {
        Hour(self.0 + TimeDelta::seconds(n * HOUR_SECS))
    }

    /// Hours from `self` to `later` (negative when `later` is earlier).
    pub fn hours_until(self, later: Hour) -> i64 {
        (later.0 - self.0).num_seconds() / HOUR_SECS
    }

    /// The first hour of the `4h` block the hour belongs to (00, 04, 08, 12, 16 or 20 UTC).
    pub fn block_start(self) -> Hour {
        let hours = self.unix().div_euclid(HOUR_SECS);
        self.plus(-hours.rem_euclid(HOURS_PER_BLOCK))
    }
}

impl fmt::Display for Hour {
    /// RFC 3339 in UTC, as the API writes a time: `2024-01-01T04:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

impl fmt::Debug for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hour({self})")
    }
}

impl From<Hour> for DateTime<Utc> {
    fn from(hour: Hour) -> Self {
        hour.0
    }
}

/// Stored as `timestamptz`; a stored value off the grid fails to decode (the tables'
/// constraints keep it from being stored at all).
impl sqlx::Type<sqlx::Postgres> for Hour {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::postgres::PgHasArrayType for Hour {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Hour {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <DateTime<Utc> as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Hour {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let at = <DateTime<Utc> as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Hour::parse(at)?)
    }
}

/// Hours from `first` to `last`, both included, in order: the hourly counterpart of a range
/// of days.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HourRange {
    first: Hour,
    last: Hour,
}

impl HourRange {
    /// `None` when `last` is before `first`.
    pub fn new(first: Hour, last: Hour) -> Option<HourRange> {
        (first <= last).then_some(HourRange { first, last })
    }

    /// The `hours` hours from `first` on; `None` for fewer than one.
    pub fn starting(first: Hour, hours: i64) -> Option<HourRange> {
        (hours >= 1).then(|| HourRange {
            first,
            last: first.plus(hours - 1),
        })
    }

    /// Every hour of the days `start..=end`, from 00:00 of the first to 23:00 of the last:
    /// 24 an hour per day, always. `None` when `end` is before `start`.
    pub fn of_days(start: NaiveDate, end: NaiveDate) -> Option<HourRange> {
        HourRange::new(Hour::first_of(start), Hour::last_of(end))
    }

    /// The hours a job of `days` fills: those of its newest 1461 days
    /// ([`DateRange::days_of_hours`]), every hour of a range the API accepts.
    pub fn of_job(days: DateRange) -> HourRange {
        let (first, last) = days.days_of_hours();
        HourRange {
            first: Hour::first_of(first),
            last: Hour::last_of(last),
        }
    }

    /// Every hour of a job's or a read's days.
    pub fn of_range(days: DateRange) -> HourRange {
        HourRange {
            first: Hour::first_of(days.start()),
            last: Hour::last_of(days.end()),
        }
    }

    pub fn first(self) -> Hour {
        self.first
    }

    pub fn last(self) -> Hour {
        self.last
    }

    /// When the range ends: the end of its last hour.
    pub fn end(self) -> DateTime<Utc> {
        self.last.end()
    }

    /// How many hours it holds, both ends included.
    pub fn hours(self) -> i64 {
        self.first.hours_until(self.last) + 1
    }

    pub fn contains(self, hour: Hour) -> bool {
        self.first <= hour && hour <= self.last
    }

    /// The UTC days it touches, in order.
    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        let last = self.last.date();
        self.first
            .date()
            .iter_days()
            .take_while(move |day| *day <= last)
    }

    /// The hours both ranges hold; `None` when they do not meet.
    pub fn intersect(self, other: HourRange) -> Option<HourRange> {
        HourRange::new(self.first.max(other.first), self.last.min(other.last))
    }

    /// The part from `hour` on (the whole range when it starts later); `None` when nothing
    /// is left: for hours before a product's first candle, or before a coin's first day.
    pub fn from_hour(self, hour: Hour) -> Option<HourRange> {
        HourRange::new(self.first.max(hour), self.last)
    }

    /// The part up to `hour` included; `None` when nothing is left: for the hours that are
    /// over, `range.until(Hour::last_complete(now))`.
    pub fn until(self, hour: Hour) -> Option<HourRange> {
        HourRange::new(self.first, self.last.min(hour))
    }

    /// Each hour, in order.
    pub fn iter(self) -> impl DoubleEndedIterator<Item = Hour> + ExactSizeIterator {
        (0..self.hours() as usize).map(move |i| self.first.plus(i as i64))
    }

    /// Consecutive windows of at most `max_hours` hours (at least 1) covering the range in
    /// order: one source call each (Coinbase answers at most 300 candles a call).
    pub fn windows(self, max_hours: u32) -> Vec<HourRange> {
        let step = i64::from(max_hours.max(1));
        let mut windows = Vec::with_capacity((self.hours() / step + 1) as usize);
        let mut first = self.first;
        while first <= self.last {
            let last = first.plus(step - 1).min(self.last);
            windows.push(HourRange { first, last });
            first = last.plus(1);
        }
        windows
    }

    /// The hours of the range that are not among `present` (in any order, hours outside
    /// the range ignored), ascending: the hours of a window a source sent no candle for.
    pub fn hours_not_in(self, present: impl IntoIterator<Item = Hour>) -> Vec<Hour> {
        let mut seen = vec![false; self.hours() as usize];
        for hour in present {
            if self.contains(hour) {
                seen[self.first.hours_until(hour) as usize] = true;
            }
        }
        self.iter()
            .zip(seen)
            .filter(|(_, s)| !s)
            .map(|(h, _)| h)
            .collect()
    }

    /// Joins ascending `hours` into runs of consecutive hours.
    pub fn runs(hours: &[Hour]) -> Vec<HourRange> {
        let mut runs: Vec<HourRange> = Vec::new();
        for &hour in hours {
            match runs.last_mut() {
                Some(run) if run.last.plus(1) == hour => run.last = hour,
                _ => runs.push(HourRange {
                    first: hour,
                    last: hour,
                }),
            }
        }
        runs
    }
}

impl fmt::Debug for HourRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HourRange({}..={})", self.first, self.last)
    }
}

impl fmt::Display for HourRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}..{}",
            self.first,
            self.end().format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{at, day};

    fn hour(s: &str) -> Hour {
        Hour::parse(at(s)).expect("on the hour")
    }

    #[test]
    fn only_the_start_of_an_hour_is_an_hour() {
        assert_eq!(
            hour("2024-01-01T04:00:00Z").to_string(),
            "2024-01-01T04:00:00Z"
        );
        for off in [
            "2024-01-01T04:30:00Z",
            "2024-01-01T04:00:01Z",
            "2024-01-01T04:00:00.001Z",
            "2024-01-01T03:59:59.999999999Z",
        ] {
            let error = Hour::parse(at(off)).unwrap_err();
            assert!(
                error.to_string().contains("is not the start of a UTC hour"),
                "{error}"
            );
        }
        assert_eq!(
            Hour::from_unix(1_704_081_600).unwrap(),
            hour("2024-01-01T04:00:00Z")
        );
        assert!(Hour::from_unix(1_704_081_601).is_err());
        assert!(Hour::from_unix(i64::MAX).is_err());
        // Before 1970 the grid holds too.
        assert_eq!(
            Hour::from_unix(-3_600).unwrap().to_string(),
            "1969-12-31T23:00:00Z"
        );
    }

    #[test]
    fn a_time_falls_in_the_hour_it_is_in_and_the_hour_ends_where_the_next_begins() {
        let h = Hour::containing(at("2024-03-10T06:59:59.999Z"));
        assert_eq!(h, hour("2024-03-10T06:00:00Z"));
        assert!(h.contains(at("2024-03-10T06:00:00Z")));
        assert!(!h.contains(at("2024-03-10T07:00:00Z")));
        assert_eq!(h.end(), at("2024-03-10T07:00:00Z"));
        assert!(!h.is_over(at("2024-03-10T06:59:59Z")));
        assert!(h.is_over(at("2024-03-10T07:00:00Z")));
        assert_eq!(Hour::containing(at("1969-12-31T23:30:00Z")).unix(), -3_600);
        assert_eq!(Hour::last_complete(at("2024-03-10T07:00:00Z")), h);
        assert_eq!(Hour::last_complete(at("2024-03-10T07:59:59Z")), h);
    }

    #[test]
    fn a_day_always_has_24_hours_even_where_other_zones_change_their_clocks() {
        // Days on which clocks change somewhere: the US and the EU in spring and autumn,
        // Lord Howe's half-hour shift, Samoa's skipped 2011-12-30, leap days and the
        // leap second of 2016-12-31 (which UTC's civil time, and chrono, do not count).
        for d in [
            "2024-03-10",
            "2024-11-03",
            "2024-03-31",
            "2024-10-27",
            "2024-04-07",
            "2011-12-30",
            "2024-02-29",
            "2016-12-31",
            "1970-01-01",
            "2013-04-28",
        ] {
            let range = HourRange::of_days(day(d), day(d)).unwrap();
            assert_eq!(range.hours(), 24, "{d}");
            assert_eq!(range.iter().count(), 24, "{d}");
            assert_eq!(range.first().to_string(), format!("{d}T00:00:00Z"));
            assert_eq!(range.last().to_string(), format!("{d}T23:00:00Z"));
            assert!(range.iter().all(|h| h.date() == day(d)), "{d}");
        }
        // Four years, one of them leap: 1461 days of 24 hours.
        let four_years = HourRange::of_days(day("2022-12-01"), day("2026-11-30")).unwrap();
        assert_eq!(four_years.hours(), 35_064);
        assert_eq!(four_years.hours(), 1461 * HOURS_PER_DAY);
    }

    #[test]
    fn blocks_of_four_hours_start_at_midnight_and_every_fourth_hour() {
        let starts: Vec<String> = HourRange::of_days(day("2024-03-31"), day("2024-03-31"))
            .unwrap()
            .iter()
            .map(|h| h.block_start().start().format("%H").to_string())
            .collect();
        let expected: Vec<String> = (0..24).map(|h| format!("{:02}", h / 4 * 4)).collect();
        assert_eq!(starts, expected);
        assert_eq!(
            Hour::from_unix(-3_600).unwrap().block_start().to_string(),
            "1969-12-31T20:00:00Z"
        );
    }

    #[test]
    fn windows_cover_a_range_in_order_with_at_most_the_given_hours() {
        let range = HourRange::starting(hour("2024-01-01T00:00:00Z"), 700).unwrap();
        let windows = range.windows(300);
        let sizes: Vec<i64> = windows.iter().map(|w| w.hours()).collect();
        assert_eq!(sizes, vec![300, 300, 100]);
        assert_eq!(windows[0].first(), range.first());
        assert_eq!(windows[1].first(), windows[0].last().plus(1));
        assert_eq!(windows[2].last(), range.last());
        assert_eq!(
            HourRange::starting(range.first(), 1)
                .unwrap()
                .windows(300)
                .len(),
            1
        );
        assert_eq!(range.windows(0).len(), 700, "at least one hour a window");
        assert_eq!(HourRange::starting(range.first(), 0), None);
    }

    #[test]
    fn the_hours_a_window_got_no_candle_for_join_into_runs() {
        let range = HourRange::starting(hour("2024-01-01T00:00:00Z"), 10).unwrap();
        let present = [0, 1, 4, 9, 12].map(|i| range.first().plus(i));
        let absent = range.hours_not_in(present);
        assert_eq!(absent.len(), 6);
        let runs = HourRange::runs(&absent);
        let shape: Vec<(i64, i64)> = runs
            .iter()
            .map(|r| (range.first().hours_until(r.first()), r.hours()))
            .collect();
        assert_eq!(shape, vec![(2, 2), (5, 4)]);
        assert!(HourRange::runs(&[]).is_empty());
    }

    #[test]
    fn ranges_are_cut_to_what_can_be_had() {
        let range = HourRange::of_days(day("2024-01-01"), day("2024-01-02")).unwrap();
        let from = range.from_hour(hour("2024-01-02T05:00:00Z")).unwrap();
        assert_eq!(from.hours(), 19);
        assert_eq!(range.from_hour(hour("2023-01-01T00:00:00Z")), Some(range));
        assert_eq!(range.from_hour(hour("2024-01-03T00:00:00Z")), None);
        let done = range
            .until(Hour::last_complete(at("2024-01-01T10:20:00Z")))
            .unwrap();
        assert_eq!(done.last(), hour("2024-01-01T09:00:00Z"));
        assert_eq!(range.until(hour("2023-12-31T23:00:00Z")), None);
        assert_eq!(range.intersect(from.intersect(range).unwrap()), Some(from));
        assert_eq!(HourRange::new(range.last(), range.first()), None);
    }
}
