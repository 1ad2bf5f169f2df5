//! Which CoinGecko calls a job makes: windows of at most `chunk_days` whole UTC days.

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::domain::{DateRange, day_runs};
use crate::store::gaps::runs;

/// Whole UTC days `start..=end` fetched by one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Window {
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    /// Its days, first to last.
    pub fn days_iter(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let end = self.end;
        self.start.iter_days().take_while(move |day| *day <= end)
    }

    /// The call's `from`: the first day's midnight.
    pub fn from(&self) -> DateTime<Utc> {
        self.start.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The call's `to`: the last second of the last day. Ending a second before the next
    /// midnight keeps a 90-day window under CoinGecko's 90-day limit for hourly points,
    /// and keeps the next day's midnight point out.
    pub fn to(&self) -> DateTime<Utc> {
        let next = self.end.checked_add_days(Days::new(1)).unwrap_or(self.end);
        next.and_time(chrono::NaiveTime::MIN).and_utc() - chrono::Duration::seconds(1)
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.start <= day && day <= self.end
    }
}

/// Splits `start..=end` into consecutive windows of at most `chunk_days` days.
fn split(start: NaiveDate, end: NaiveDate, chunk_days: u32, windows: &mut Vec<Window>) {
    let runs = day_runs(start, end, chunk_days);
    windows.extend(runs.into_iter().map(|(start, end)| Window { start, end }));
}

/// Forced jobs fetch the whole range.
pub fn windows_for_range(range: DateRange, chunk_days: u32) -> Vec<Window> {
    let mut windows = Vec::new();
    split(range.start(), range.end(), chunk_days, &mut windows);
    windows
}

/// Windows covering only the given (ascending) days: each run of consecutive days is
/// split on its own, so a hole is never bridged with days already stored.
pub fn windows_for_days(days: &[NaiveDate], chunk_days: u32) -> Vec<Window> {
    let mut windows = Vec::new();
    for (start, end) in runs(days) {
        split(start, end, chunk_days, &mut windows);
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Coin, day};

    fn range_of(days: i64) -> DateRange {
        let start = day("2022-01-01");
        let end = start + chrono::Duration::days(days - 1);
        DateRange::for_coin(&Coin::bitcoin(), start, end, day("2026-11-28")).unwrap()
    }

    #[test]
    fn window_counts_for_1_90_91_and_1461_days() {
        for (days, expected) in [(1, 1), (90, 1), (91, 2), (1461, 17)] {
            let windows = windows_for_range(range_of(days), 90);
            assert_eq!(windows.len(), expected, "{days} days");
            assert_eq!(windows.iter().map(Window::days).sum::<i64>(), days);
            assert!(windows.iter().all(|w| w.days() <= 90));
            assert!(
                windows
                    .windows(2)
                    .all(|p| p[0].end.succ_opt() == Some(p[1].start)),
                "contiguous"
            );
        }
    }

    #[test]
    fn a_window_asks_from_first_midnight_to_the_last_second_of_its_last_day() {
        let window = Window {
            start: day("2024-01-01"),
            end: day("2024-03-30"),
        };
        assert_eq!(window.days(), 90);
        assert_eq!(window.from().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(window.to().to_rfc3339(), "2024-03-30T23:59:59+00:00");
        assert!((window.to() - window.from()).num_seconds() < 90 * 86_400);
    }

    #[test]
    fn holes_of_1_5_and_120_days_need_4_windows() {
        let mut missing = vec![day("2023-01-10")];
        missing.extend((0..5).map(|i| day("2023-03-01") + chrono::Duration::days(i)));
        missing.extend((0..120).map(|i| day("2023-06-01") + chrono::Duration::days(i)));
        let windows = windows_for_days(&missing, 90);
        assert_eq!(windows.len(), 4);
        assert_eq!(
            windows[0],
            Window {
                start: day("2023-01-10"),
                end: day("2023-01-10")
            }
        );
        assert_eq!(
            windows[1],
            Window {
                start: day("2023-03-01"),
                end: day("2023-03-05")
            }
        );
        assert_eq!(windows[2].days() + windows[3].days(), 120);
    }
}
