use chrono::{Days, NaiveDate};

/// How far back the CoinGecko plan serves prices: the public and Demo plans serve the
/// past 365 days, paid plans everything. Days older than the reach are *out of plan*:
/// no job asks for them, and they are reported apart from gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanReach {
    /// `None`: no limit known.
    days: Option<u32>,
}

impl PlanReach {
    /// No limit known (a paid plan, or a reach not configured nor learned yet).
    pub const UNLIMITED: PlanReach = PlanReach { days: None };

    /// The past `days` days; 0 means no limit, as `COINGECKO_HISTORY_DAYS=0` does.
    pub fn days(days: u32) -> PlanReach {
        PlanReach {
            days: (days > 0).then_some(days),
        }
    }

    pub fn limit_days(&self) -> Option<u32> {
        self.days
    }

    /// The oldest day the plan serves, judged on `today` (UTC): the past N days are
    /// today and the N - 1 days before it, whose midnights all lie within N × 24 hours
    /// of any moment of today. `None` when there is no limit.
    pub fn first_served_day(&self, today: NaiveDate) -> Option<NaiveDate> {
        let days = self.days?;
        Some(
            today
                .checked_sub_days(Days::new(u64::from(days) - 1))
                .unwrap_or(NaiveDate::MIN),
        )
    }

    /// The days of `start..=end` the plan serves: `None` when none is.
    pub fn served_part(
        &self,
        start: NaiveDate,
        end: NaiveDate,
        today: NaiveDate,
    ) -> Option<(NaiveDate, NaiveDate)> {
        let from = self
            .first_served_day(today)
            .map_or(start, |first| start.max(first));
        (from <= end).then_some((from, end))
    }

    /// Of the ascending `days`, those the plan serves and those it does not.
    pub fn split(
        &self,
        days: Vec<NaiveDate>,
        today: NaiveDate,
    ) -> (Vec<NaiveDate>, Vec<NaiveDate>) {
        match self.first_served_day(today) {
            None => (days, Vec::new()),
            Some(first) => {
                let (served, out): (Vec<_>, Vec<_>) = days.into_iter().partition(|d| *d >= first);
                (served, out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::day;

    #[test]
    fn the_past_365_days_are_today_and_the_364_before() {
        let reach = PlanReach::days(365);
        assert_eq!(
            reach.first_served_day(day("2026-11-28")),
            Some(day("2025-11-29"))
        );
        assert_eq!(
            PlanReach::days(1).first_served_day(day("2026-11-28")),
            Some(day("2026-11-28"))
        );
        assert_eq!(PlanReach::days(0), PlanReach::UNLIMITED);
        assert_eq!(
            PlanReach::UNLIMITED.first_served_day(day("2026-11-28")),
            None
        );
    }

    #[test]
    fn a_range_is_cut_to_what_the_plan_serves() {
        let reach = PlanReach::days(365);
        let today = day("2026-11-28");
        assert_eq!(
            reach.served_part(day("2022-11-29"), today, today),
            Some((day("2025-11-29"), today))
        );
        assert_eq!(
            reach.served_part(day("2020-01-01"), day("2020-12-31"), today),
            None
        );
        let (served, out) = reach.split(vec![day("2025-11-28"), day("2025-11-29")], today);
        assert_eq!(
            (served, out),
            (vec![day("2025-11-29")], vec![day("2025-11-28")])
        );
    }
}
