//! What bringing a coin's hours up to date means, once they are turned on: every hour of the
//! days the coin keeps (from its first day to keep, as for its days:
//! [`super::tracking::first_day_to_keep`]), never more than [`MAX_RANGE_DAYS`] back, through
//! the last complete hour, in one job of the coin. A job of an hourly coin fills the missing
//! hours of its range beside its missing days, so the job is an ordinary one over those
//! days: it asks only for what is missing, and nothing when nothing is.
//!
//! The schedule keeps them current the same way (`schedule::Scheduler`, with
//! [`lagging_from`]): at each tick, a coin whose last hour accounted for (read from its
//! figures, one row per coin) is older than the last complete hour gets one job from that
//! hour's day through today.

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::PgPool;

use super::tracking::{CoinSync, SyncError, first_day_to_keep, queue_job};
use crate::credits::Credits;
use crate::domain::{Coin, Hour, HourRange, MAX_RANGE_DAYS, PlanReach, Trigger};
use crate::store::hourly_coins::HourlyCoin;
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

/// Where a read's and a job's expected hours are decided: one rule, in `domain`.
pub use crate::domain::expected_hours;

/// The hours of `days` that are over at `now`.
fn complete_hours((start, end): (NaiveDate, NaiveDate), now: DateTime<Utc>) -> Option<HourRange> {
    HourRange::of_days(start, end)?.until(Hour::last_complete(now))
}

/// Brings the hours of a coin whose hours were just turned on up to date at once: one job
/// over the days of its hours, unless its figures show every hour accounted for already
/// (turned off and on again, say) or a job of the coin is active. With `days_from` (tracking
/// turned on at the same time: its first day to keep), the job starts there when that is
/// earlier, so that it brings the days older than its hours up to date too: one job of a
/// coin at a time, and a job fills its missing days over its whole range.
pub(super) async fn hours_started(
    (pool, credits): (&PgPool, &Credits),
    reach: PlanReach,
    (coin, figures): (&Coin, &HourlyFigures),
    days_from: Option<NaiveDate>,
    trigger: Trigger,
) -> Result<CoinSync, SyncError> {
    let now = Utc::now();
    let today = now.date_naive();
    let Some((start, end)) = days_of_hours_to_keep(coin, reach, today) else {
        return Ok(CoinSync::UpToDate);
    };
    match complete_hours((start, end), now) {
        // Known from one row of figures: no gap query over up to 35,064 hours.
        Some(hours) if !figures.covers(hours) => {
            let start = days_from.map_or(start, |from| from.min(start));
            queue_job((pool, credits), coin, (start, end), today, trigger).await
        }
        _ => Ok(CoinSync::UpToDate),
    }
}

/// The first hour a coin's hours lag by at `now`: the hour after the last one accounted for
/// (or the first hour it keeps, when none is, or when that is later), when the last complete
/// hour is not accounted for yet; `None` when its hours are current. Read from the coin's
/// figures alone: hours missing further back are not a tick's to look for (a job of the
/// coin's range finds them), so that a hole no source can fill costs no call every tick.
pub fn lagging_from(
    coin: &Coin,
    hourly: &HourlyCoin,
    reach: PlanReach,
    now: DateTime<Utc>,
) -> Option<Hour> {
    let keep = hours_to_keep(coin, reach, now)?;
    let keep = match hourly.coinbase_hours_from {
        Some(from) => keep.from_hour(from)?,
        None => keep,
    };
    match hourly.figures.accounted {
        Some(accounted) if accounted.last() >= keep.last() => None,
        Some(accounted) => Some(accounted.last().plus(1).max(keep.first())),
        None => Some(keep.first()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PriceSource, at, day};

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

    fn hourly(accounted: Option<(&str, &str)>, from: Option<&str>) -> HourlyCoin {
        let hour = |s: &str| Hour::parse(at(s)).unwrap();
        HourlyCoin {
            symbol: crate::domain::Symbol::BTC,
            hourly: true,
            coinbase_hours_from: from.map(hour),
            figures: HourlyFigures {
                accounted: accounted.and_then(|(a, b)| HourRange::new(hour(a), hour(b))),
                ..HourlyFigures::default()
            },
        }
    }

    #[test]
    fn hours_lag_from_the_hour_after_the_last_accounted_for_until_the_last_complete_one() {
        let now = at("2026-11-28T10:20:00Z");
        let mut coin = Coin::bitcoin();
        coin.track_since = Some(day("2026-11-20"));
        let reach = PlanReach::days(365);
        let lag = |h: &HourlyCoin| lagging_from(&coin, h, reach, now).map(|h| h.to_string());
        let current = hourly(Some(("2026-11-20T00:00:00Z", "2026-11-28T09:00:00Z")), None);
        assert_eq!(lag(&current), None);
        let behind = hourly(Some(("2026-11-20T00:00:00Z", "2026-11-27T21:00:00Z")), None);
        assert_eq!(lag(&behind).as_deref(), Some("2026-11-27T22:00:00Z"));
        assert_eq!(
            lag(&hourly(None, None)).as_deref(),
            Some("2026-11-20T00:00:00Z")
        );
        let listed_later = hourly(None, Some("2026-11-25T05:00:00Z"));
        assert_eq!(lag(&listed_later).as_deref(), Some("2026-11-25T05:00:00Z"));
        let older = hourly(Some(("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")), None);
        assert_eq!(lag(&older).as_deref(), Some("2026-11-20T00:00:00Z"));
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
