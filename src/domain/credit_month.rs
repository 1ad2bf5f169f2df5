//! The UTC calendar month that monthly credits are counted in (`COINGECKO_CALLS_PER_MONTH`):
//! which month a moment falls in, and the day the next one begins.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

/// A UTC calendar month, named by its first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CreditMonth(NaiveDate);

impl CreditMonth {
    /// The month `now` falls in.
    pub fn of(now: DateTime<Utc>) -> Self {
        Self::containing(now.date_naive())
    }

    /// The month `day` falls in.
    pub fn containing(day: NaiveDate) -> Self {
        CreditMonth(day.with_day(1).unwrap_or(day))
    }

    /// Its first day: how the database names it.
    pub fn first_day(self) -> NaiveDate {
        self.0
    }

    /// The first day of the next month: when the credits reset (00:00 UTC).
    pub fn resets_on(self) -> NaiveDate {
        self.0
            .checked_add_months(Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    }

    /// When the month begins, 00:00 UTC of its first day.
    pub fn starts_at(self) -> DateTime<Utc> {
        self.0.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
    }

    /// When the credits reset, as a moment.
    pub fn resets_at(self) -> DateTime<Utc> {
        self.resets_on()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
    }

    /// Its number of days (28 to 31).
    pub fn days(self) -> u32 {
        u32::try_from((self.resets_on() - self.0).num_days()).unwrap_or(30)
    }

    /// `2026-12`, as messages say it.
    pub fn label(self) -> String {
        self.0.format("%Y-%m").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{at, day};

    #[test]
    fn a_moment_falls_in_its_utc_month_which_resets_on_the_first_of_the_next() {
        let december = CreditMonth::of(at("2026-12-31T23:59:59Z"));
        assert_eq!(december.first_day(), day("2026-12-01"));
        assert_eq!(december.resets_on(), day("2027-01-01"));
        assert_eq!(december.resets_at(), at("2027-01-01T00:00:00Z"));
        assert_eq!(december.days(), 31);
        assert_eq!(december.label(), "2026-12");
        let january = CreditMonth::of(at("2027-01-01T00:00:00Z"));
        assert_ne!(january, december);
        assert_eq!(CreditMonth::containing(day("2028-02-10")).days(), 29);
    }
}
