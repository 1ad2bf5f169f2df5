//! What bringing a coin's hours up to date means, once they are turned on: every hour of the
//! days the coin keeps (from its first day to keep, as for its days:
//! [`super::tracking::first_day_to_keep`]), never more than [`MAX_RANGE_DAYS`] back, through
//! the last complete hour, in one job of the coin. A job of an hourly coin fills the missing
//! hours of its range beside its missing days, so the job is an ordinary one over those
//! days: it asks only for what is missing, and nothing when nothing is.

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::PgPool;

use super::tracking::{CoinSync, SyncError, first_day_to_keep, queue_job};
use crate::domain::{Coin, Hour, HourRange, MAX_RANGE_DAYS, PlanReach, PriceSource, Trigger};
use crate::ingest::Reach;
use crate::store::hourly_figures::HourlyFigures;

/// The days whose hours a coin keeps on `today`: from its first day to keep, or the
/// [`MAX_RANGE_DAYS`]th day before `today` when that is later, to `today` (whose complete
/// hours count). `None` when the coin keeps no day yet.
pub fn days_of_hours_to_keep(
    coin: &Coin,
    reach: PlanReach,
    today: NaiveDate,
) -> Option<(NaiveDate, NaiveDate)> {
    let earliest = today
        .checked_sub_days(Days::new(MAX_RANGE_DAYS as u64 - 1))
        .unwrap_or(NaiveDate::MIN);
    let start = first_day_to_keep(coin, reach, today).max(earliest);
    (start <= today).then_some((start, today))
}

/// The hours a coin keeps at `now`: those of [`days_of_hours_to_keep`] up to the last
/// complete hour; `None` when not one of them is over yet.
pub fn hours_to_keep(coin: &Coin, reach: PlanReach, now: DateTime<Utc>) -> Option<HourRange> {
    days_of_hours_to_keep(coin, reach, now.date_naive()).and_then(|days| complete_hours(days, now))
}

/// The hours of `days` (a read's range) that a coin can have at `now`, which coverage in
/// hours and the calendar's hours count as expected: from the coin's first day, from where
/// its `source` of hours begins (Coinbase: its product's first hourly candle,
/// `coinbase_hours_from`; CoinGecko-built hours: the plan's first served day), through the
/// last complete hour. With no source (the coin keeps no hours, or its product awaits its
/// check) only the first day and the last complete hour bound it. `None` when none is.
pub fn expected_hours(
    coin: &Coin,
    source: Option<PriceSource>,
    coinbase_hours_from: Option<Hour>,
    reach: PlanReach,
    days: (NaiveDate, NaiveDate),
    now: DateTime<Utc>,
) -> Option<HourRange> {
    let mut first = Hour::first_of(days.0);
    if let Some(first_day) = coin.first_day {
        first = first.max(Hour::first_of(first_day));
    }
    let from_source = match source {
        Some(PriceSource::Coinbase) => coinbase_hours_from,
        Some(PriceSource::CoinGecko) => {
            reach.first_served_day(now.date_naive()).map(Hour::first_of)
        }
        None => None,
    };
    if let Some(from) = from_source {
        first = first.max(from);
    }
    HourRange::new(first, Hour::last_of(days.1).min(Hour::last_complete(now)))
}

/// The hours of `days` that are over at `now`.
fn complete_hours((start, end): (NaiveDate, NaiveDate), now: DateTime<Utc>) -> Option<HourRange> {
    HourRange::of_days(start, end)?.until(Hour::last_complete(now))
}

/// Brings the hours of a coin whose hours were just turned on up to date at once: one job
/// over the days of its hours, unless its figures show every hour accounted for already
/// (turned off and on again, say) or a job of the coin is active.
pub(super) async fn hours_started(
    pool: &PgPool,
    reach: &Reach,
    (coin, figures): (&Coin, &HourlyFigures),
    trigger: Trigger,
    max_attempts: u32,
) -> Result<CoinSync, SyncError> {
    let reach = reach.current(pool).await?;
    let now = Utc::now();
    let today = now.date_naive();
    let Some(days) = days_of_hours_to_keep(coin, reach, today) else {
        return Ok(CoinSync::UpToDate);
    };
    match complete_hours(days, now) {
        // Known from one row of figures: no gap query over up to 35,064 hours.
        Some(hours) if !figures.covers(hours) => {
            queue_job(pool, coin, days, today, trigger, max_attempts).await
        }
        _ => Ok(CoinSync::UpToDate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::day;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn hours_are_kept_for_the_days_kept_at_most_1461_back_through_the_last_complete_hour() {
        let now = at("2026-11-28T10:20:00Z");
        let mut coin = Coin::bitcoin();
        let hours = hours_to_keep(&coin, PlanReach::UNLIMITED, now).unwrap();
        assert_eq!(hours.first(), Hour::first_of(day("2022-11-29")));
        assert_eq!(hours.last(), Hour::last_complete(now));
        assert_eq!(hours.last().start(), at("2026-11-28T09:00:00Z"));
        assert_eq!(hours.hours(), (MAX_RANGE_DAYS - 1) * 24 + 10);

        let on_a_year = hours_to_keep(&coin, PlanReach::days(365), now).unwrap();
        assert_eq!(on_a_year.first(), Hour::first_of(day("2025-11-29")));

        coin.track_since = Some(day("2026-11-01"));
        let since = days_of_hours_to_keep(&coin, PlanReach::days(365), day("2026-11-28"));
        assert_eq!(since, Some((day("2026-11-01"), day("2026-11-28"))));
    }

    #[test]
    fn a_read_expects_hours_from_the_first_day_and_its_sources_start_through_the_last_complete_hour()
     {
        let now = at("2026-11-28T10:20:00Z");
        let mut coin = Coin::bitcoin();
        coin.first_day = Some(day("2026-11-20"));
        let days = (day("2026-11-01"), day("2026-11-30"));
        let from = Hour::first_of(day("2026-11-25")).plus(5);
        let expect = |source, reach| expected_hours(&coin, source, Some(from), reach, days, now);
        let plain = expect(None, PlanReach::days(3)).unwrap();
        assert_eq!(plain.first(), Hour::first_of(day("2026-11-20")));
        assert_eq!(plain.last().start(), at("2026-11-28T09:00:00Z"));
        let coinbase = expect(Some(PriceSource::Coinbase), PlanReach::days(3)).unwrap();
        assert_eq!(coinbase.first(), from);
        let coingecko = expect(Some(PriceSource::CoinGecko), PlanReach::days(3)).unwrap();
        assert_eq!(coingecko.first(), Hour::first_of(day("2026-11-26")));
        let before = expected_hours(
            &coin,
            None,
            None,
            PlanReach::UNLIMITED,
            (day("2026-01-01"), day("2026-01-31")),
            now,
        );
        assert_eq!(
            before, None,
            "every day of the read is before the coin's first"
        );
    }

    #[test]
    fn a_coin_tracked_from_today_keeps_todays_complete_hours_and_none_before_the_first() {
        let mut coin = Coin::bitcoin();
        coin.track_since = Some(day("2026-11-28"));
        let hours = hours_to_keep(&coin, PlanReach::UNLIMITED, at("2026-11-28T03:59:59Z")).unwrap();
        assert_eq!(hours.hours(), 3);
        assert_eq!(
            hours_to_keep(&coin, PlanReach::UNLIMITED, at("2026-11-28T00:30:00Z")),
            None,
            "no hour of the day is over yet"
        );
    }
}
