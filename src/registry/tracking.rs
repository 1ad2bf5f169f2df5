//! What bringing a tracked coin up to date means: its missing days, from the latest of
//! `track_since`, its first day and the plan's reach, to yesterday (UTC), in one job.
//! The schedule does it for every tracked coin at each tick; the registry does it for one
//! coin at once when its tracking is turned on. Its hours start on the same first day
//! ([`first_day_to_keep`]; see `registry::hours`).

use chrono::{Days, NaiveDate};
use sqlx::PgPool;
use uuid::Uuid;

use crate::credits::Credits;
use crate::domain::{BEFORE_ANY_COIN, Coin, DateRange, PlanReach, RangeError, Symbol, Trigger};
use crate::queue::{self, SubmitError, Turn};
use crate::store::coin_figures::CompleteDays;
use crate::store::ingestion_jobs::{self, JobRecord, NewJob};
use crate::store::{empty_days, gaps};

/// What bringing one coin up to date did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoinSync {
    /// Nothing to fetch: no job, no call.
    UpToDate,
    /// Its missing days are on the queue.
    Queued(JobRecord),
    /// Days are missing but a job of the coin is active; the next tick looks again.
    Busy(Option<Uuid>),
    /// The month's CoinGecko credits cannot pay for the job now: none is started beyond
    /// them, and the schedule queues it once they can (at the latest when the month resets
    /// on this day).
    Unaffordable(NaiveDate),
}

/// The days a tracked coin should have on `today`: from the latest of `track_since`, its
/// first day and the first day the plan serves, to yesterday. `None` when that is empty.
/// The tick applies the same rule in SQL to all coins at once
/// (`store::coin_figures::tracked_needing_a_look`): change both together.
pub fn days_to_keep(
    coin: &Coin,
    reach: PlanReach,
    today: NaiveDate,
) -> Option<(NaiveDate, NaiveDate)> {
    let yesterday = today.checked_sub_days(Days::new(1))?;
    let start = first_day_to_keep(coin, reach, today);
    (start <= yesterday).then_some((start, yesterday))
}

/// The first day a coin keeps on `today`: the latest of `track_since`, its first day and
/// the first day the plan serves. Its days start there, and so do its hours. Never before
/// [`BEFORE_ANY_COIN`], where it starts when none is known (a coin registered under a plan
/// that did not reach its first day, now under one without a limit): its next job learns
/// the first day, and meanwhile the days before it are a few thousand, not the calendar's
/// millions.
pub fn first_day_to_keep(coin: &Coin, reach: PlanReach, today: NaiveDate) -> NaiveDate {
    [
        Some(BEFORE_ANY_COIN),
        coin.track_since,
        coin.first_day,
        reach.first_served_day(today),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(BEFORE_ANY_COIN)
}

/// The job's range for ascending `missing` days: from the first to the last, however far
/// apart ([`DateRange::to_keep`]): the job asks only for the missing ones.
pub fn job_range(missing: &[NaiveDate]) -> Option<(NaiveDate, NaiveDate)> {
    Some((*missing.first()?, *missing.last()?))
}

/// The missing days of `start..=end` of a coin whose complete days are `known`: computed
/// from its figures when they are none or one unbroken run, by the gap query otherwise;
/// less those the schedule rests ([`empty_days`]: CoinGecko answered them empty before).
/// The flag says whether the gap query ran.
pub async fn missing_days_known(
    pool: &PgPool,
    symbol: Symbol,
    (start, end): (NaiveDate, NaiveDate),
    known: CompleteDays,
) -> sqlx::Result<(Vec<NaiveDate>, bool)> {
    let (missing, queried) = match known {
        CompleteDays::None => (days_outside(start, end, None), false),
        CompleteDays::Run(first, last) => (days_outside(start, end, Some((first, last))), false),
        CompleteDays::Broken => (gaps::missing_days(pool, symbol, start, end).await?, true),
    };
    let (to_ask, _rested) = empty_days::without_resting(pool, symbol, missing).await?;
    Ok((to_ask, queried))
}

/// The days of `start..=end` outside the unbroken `run` (all of them without one).
fn days_outside(
    start: NaiveDate,
    end: NaiveDate,
    run: Option<(NaiveDate, NaiveDate)>,
) -> Vec<NaiveDate> {
    start
        .iter_days()
        .take_while(|day| *day <= end)
        .filter(|day| run.is_none_or(|(first, last)| !(first..=last).contains(day)))
        .collect()
}

/// The job a tick queues for `coin` to fill `missing` (ascending), its days cut as
/// [`job_range`] cuts them, with the missing days it covers; `None` when nothing is
/// missing.
pub fn tick_job(
    coin: &Coin,
    missing: &[NaiveDate],
    today: NaiveDate,
) -> Result<Option<(NewJob, Vec<NaiveDate>)>, RangeError> {
    let Some((start, end)) = job_range(missing) else {
        return Ok(None);
    };
    let job = schedule_job(coin, (start, end), today)?;
    let in_job = missing
        .iter()
        .copied()
        .filter(|day| (start..=end).contains(day))
        .collect();
    Ok(Some((job, in_job)))
}

/// The unforced job a tick of the schedule queues for `coin` over `days`.
pub fn schedule_job(
    coin: &Coin,
    (start, end): (NaiveDate, NaiveDate),
    today: NaiveDate,
) -> Result<NewJob, RangeError> {
    Ok(NewJob {
        id: Uuid::now_v7(),
        symbol: coin.symbol,
        range: DateRange::to_keep(coin, start, end, today)?,
        force: false,
        trigger: Trigger::Schedule,
    })
}

/// Why a coin could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database or the queue failed: nothing was queued, and trying again may pass.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The queue refused the job for a reason other than an active job of the coin.
    #[error(transparent)]
    Queue(SubmitError),
    /// The coin's missing days make no job the rules accept (its record contradicts
    /// them): a fault of this coin alone.
    #[error(transparent)]
    Range(#[from] RangeError),
}

impl SyncError {
    /// True when the fault is the database's or the queue's rather than the coin's: a
    /// tick fails whole on it (and is tried again) instead of going on to the next coin.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Queue(_))
    }
}

/// Queues one job for `coin`'s missing days, unless none is missing or a job of the coin
/// is active. `trigger` says who asked: the schedule, or a user who turned tracking on.
pub async fn bring_up_to_date(
    (pool, credits): (&PgPool, &Credits),
    coin: &Coin,
    reach: PlanReach,
    today: NaiveDate,
    trigger: Trigger,
) -> Result<CoinSync, SyncError> {
    let Some((start, end)) = days_to_keep(coin, reach, today) else {
        return Ok(CoinSync::UpToDate);
    };
    // An active job first: its days may be missing only until it commits them, so
    // reading the gaps before it ends would queue a second job for the same days.
    if let Some(active) = ingestion_jobs::active_job_id(pool, coin.symbol).await? {
        return Ok(CoinSync::Busy(Some(active)));
    }
    let missing = gaps::missing_days(pool, coin.symbol, start, end).await?;
    let Some(days) = job_range(&missing) else {
        return Ok(CoinSync::UpToDate);
    };
    queue_job((pool, credits), coin, days, today, trigger).await
}

/// Queues one unforced job of `coin` over `days` (which fetches only what is missing in
/// them), if the month's `credits` pay for it (the rule the API and the CLI apply to a job
/// they are asked for); a job of the coin active already makes it [`CoinSync::Busy`].
pub(super) async fn queue_job(
    (pool, credits): (&PgPool, &Credits),
    coin: &Coin,
    (start, end): (NaiveDate, NaiveDate),
    today: NaiveDate,
    trigger: Trigger,
) -> Result<CoinSync, SyncError> {
    let range = DateRange::to_keep(coin, start, end, today)?;
    if let Err(short) = credits.afford_job(coin, range, false, today).await? {
        return Ok(CoinSync::Unaffordable(short.resets_on()));
    }
    let job = NewJob {
        id: Uuid::now_v7(),
        symbol: coin.symbol,
        range,
        force: false,
        trigger,
    };
    match queue::submit(pool, job, Turn::InOrder).await {
        Ok(record) => Ok(CoinSync::Queued(record)),
        Err(SubmitError::JobInProgress(active)) => Ok(CoinSync::Busy(Some(active))),
        Err(SubmitError::Contended) => Ok(CoinSync::Busy(None)),
        Err(e) => Err(SyncError::Queue(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Coin;
    use crate::domain::day;

    #[test]
    fn the_days_outside_an_unbroken_run_are_those_before_and_after_it() {
        let days = |from: &str, to: &str| -> Vec<NaiveDate> {
            day(from)
                .iter_days()
                .take_while(|d| *d <= day(to))
                .collect()
        };
        let (start, end) = (day("2026-11-01"), day("2026-11-10"));
        assert_eq!(
            days_outside(start, end, None),
            days("2026-11-01", "2026-11-10")
        );
        let run = Some((day("2026-11-03"), day("2026-11-08")));
        let mut expected = days("2026-11-01", "2026-11-02");
        expected.extend(days("2026-11-09", "2026-11-10"));
        assert_eq!(days_outside(start, end, run), expected);
        let covering = Some((day("2026-10-01"), day("2026-11-10")));
        assert!(days_outside(start, end, covering).is_empty());
        let behind = Some((day("2026-10-01"), day("2026-11-07")));
        assert_eq!(
            days_outside(start, end, behind),
            days("2026-11-08", "2026-11-10")
        );
    }

    #[test]
    fn the_latest_of_track_since_first_day_and_reach_starts_the_days_to_keep() {
        let today = day("2026-11-28");
        let mut coin = Coin::bitcoin();
        assert_eq!(
            days_to_keep(&coin, PlanReach::UNLIMITED, today),
            Some((day("2013-04-28"), day("2026-11-27")))
        );
        assert_eq!(
            days_to_keep(&coin, PlanReach::days(365), today),
            Some((day("2025-11-29"), day("2026-11-27")))
        );
        coin.track_since = Some(day("2026-11-01"));
        assert_eq!(
            days_to_keep(&coin, PlanReach::days(365), today),
            Some((day("2026-11-01"), day("2026-11-27")))
        );
        coin.track_since = Some(today);
        assert_eq!(days_to_keep(&coin, PlanReach::UNLIMITED, today), None);
        coin.track_since = None;
        coin.first_day = None;
        assert_eq!(
            days_to_keep(&coin, PlanReach::days(1), today),
            None,
            "a plan that serves only today leaves nothing to keep"
        );
        // Nothing known, no limit: from before any coin, as the tick's query keeps it;
        // and never earlier, whatever `track_since` says.
        assert_eq!(
            days_to_keep(&coin, PlanReach::UNLIMITED, today),
            Some((BEFORE_ANY_COIN, day("2026-11-27")))
        );
        coin.track_since = Some(day("2001-01-01"));
        assert_eq!(
            days_to_keep(&coin, PlanReach::UNLIMITED, today),
            Some((BEFORE_ANY_COIN, day("2026-11-27")))
        );
    }

    #[test]
    fn a_job_spans_the_missing_days_however_far_apart() {
        assert_eq!(job_range(&[]), None);
        let holes = [day("2026-01-05"), day("2026-03-01"), day("2026-11-27")];
        assert_eq!(
            job_range(&holes),
            Some((day("2026-01-05"), day("2026-11-27")))
        );
        // Yesterday is missing at every tick: a job cut to the latest 1461 days would
        // never reach 2013.
        let old = [day("2013-04-28"), day("2026-11-27")];
        let (start, end) = job_range(&old).unwrap();
        assert_eq!((start, end), (day("2013-04-28"), day("2026-11-27")));
        let coin = Coin::bitcoin();
        let range = DateRange::to_keep(&coin, start, end, day("2026-11-28")).unwrap();
        assert_eq!(range.days(), 4962);
        assert_eq!(
            range.days_of_hours(),
            (day("2022-11-28"), day("2026-11-27")),
            "its hours: the newest 1461 days"
        );
        assert!(
            DateRange::for_coin(&coin, start, end, day("2026-11-28")).is_err(),
            "a job asked for stays within 1461 days"
        );
    }
}
