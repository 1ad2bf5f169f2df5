//! The clock of the schedule and of the monthly credits: the system's, shifted by a test-only offset so that tests can
//! run processes whose clocks disagree. Only debug builds read the offset
//! (`PH_SYNC_CLOCK_OFFSET_MS`, see `config.rs`); in a release build it is always zero.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    /// Added to the system clock; zero outside tests.
    offset: TimeDelta,
}

impl Clock {
    pub const SYSTEM: Clock = Clock {
        offset: TimeDelta::zero(),
    };

    /// The system clock shifted by `offset_ms` (negative: behind).
    pub fn offset_by_ms(offset_ms: i64) -> Clock {
        Clock {
            offset: TimeDelta::milliseconds(offset_ms),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills `offset_by_ms -> Default::default()` and `+` -> `-` in `now`: a process
    /// started with `PH_SYNC_CLOCK_OFFSET_MS` must run that far ahead (or behind).
    #[test]
    fn an_offset_shifts_the_clock_by_that_much() {
        let before = Utc::now();
        let ahead = Clock::offset_by_ms(60_000).now();
        let behind = Clock::offset_by_ms(-60_000).now();
        let after = Utc::now();
        let minute = TimeDelta::minutes(1);
        assert!(
            before + minute <= ahead && ahead <= after + minute,
            "{ahead}"
        );
        assert!(
            before - minute <= behind && behind <= after - minute,
            "{behind}"
        );
    }

    /// Kills `today -> Default::default()`: the day is the shifted clock's UTC day.
    #[test]
    fn today_is_the_shifted_clocks_utc_day() {
        let day = TimeDelta::days(1);
        let before = (Utc::now() + day).date_naive();
        let today = Clock::offset_by_ms(day.num_milliseconds()).today();
        let after = (Utc::now() + day).date_naive();
        assert!(before <= today && today <= after, "{today}");
        assert!(Clock::SYSTEM.today() >= before.pred_opt().unwrap());
    }
}
