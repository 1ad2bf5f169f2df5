//! The attempt under way: what it knows (the coin, today, the reach), what it has done so
//! far (windows planned, whether it learned the reach, what fell short), and what every
//! step asks of the database through it.

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};

use super::hours::HourWork;
use super::{Attempt, Ingestor, JobError, Shortfalls};
use crate::domain::{self, Coin, PlanReach, Trigger};
use crate::ingest::{Window, windows_for_days};
use crate::store::{empty_days, gaps, ingestion_jobs, patience};

/// One attempt under way; each step is a method of it, in a file of its own.
pub(super) struct Run<'a, S> {
    pub(super) ingestor: &'a Ingestor,
    pub(super) attempt: Attempt<'a>,
    /// Where the windows are asked for.
    pub(super) source: S,
    pub(super) coin: Coin,
    /// When the attempt began: the hours it expects end with the last one complete then,
    /// so that an hour ending while it runs is the next job's, not a gap of this one.
    pub(super) began: DateTime<Utc>,
    /// Today (UTC) when the attempt began: days from it on are not over.
    pub(super) today: NaiveDate,
    /// The reach in force: days older are never asked for.
    pub(super) reach: PlanReach,
    /// The job's `chunks_total`: windows done before this attempt plus those it planned.
    pub(super) planned: i32,
    /// True once this attempt learned the reach: a second refusal within the learned
    /// reach fails the attempt instead of planning again.
    pub(super) learned: bool,
    pub(super) shortfalls: Shortfalls,
    /// True once this attempt checked the coin's product with the second source: a check
    /// that could not be made is not made again by a later step of the same attempt (the
    /// shortfall says why), but by the next job.
    pub(super) product_checked: bool,
    /// The hours of an hourly coin (read when the attempt began); `None` for a coin that
    /// keeps no hours, or has turned them off: its job fetches none.
    pub(super) hours: Option<HourWork>,
}

/// Runs a query of the job, waiting out an unavailable database rather than failing the
/// job over it (`store::patience`): an outage of any length costs the job neither an
/// attempt nor a call. If another worker took the job over meanwhile, the checkpoint's
/// fence refuses this attempt's late write.
pub(super) async fn patiently<T, F, Fut>(query: F) -> Result<T, JobError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    Ok(patience::patiently("the job", query).await?)
}

impl<S> Run<'_, S> {
    /// Adds `windows` to the job's `chunks_total`.
    pub(super) async fn count_planned(&mut self, windows: usize) -> Result<(), JobError> {
        self.planned += windows as i32;
        let (pool, id, planned) = (&self.ingestor.pool, self.attempt.job.id, self.planned);
        patiently(|| ingestion_jobs::set_chunks_total(pool, id, planned)).await
    }

    /// Takes the clock again (the attempt's `began` and `today`); true when the UTC day
    /// has turned since the attempt began or last looked.
    pub(super) fn turn_the_day(&mut self) -> bool {
        let was = self.today;
        self.began = Utc::now();
        self.today = self.began.date_naive();
        self.today != was
    }

    /// The part of the job's days the reach serves, if any.
    pub(super) fn served_part(&self) -> Option<(NaiveDate, NaiveDate)> {
        self.reach
            .served_part(self.first_day(), self.last_day(), self.today)
    }

    /// The first day of the job's range the coin can have: its range's start, or the
    /// coin's first day when later (learned when the attempt began, for a range the
    /// schedule queued before it was known).
    pub(super) fn first_day(&self) -> NaiveDate {
        self.attempt.job.range.first_day_of(self.coin.first_day)
    }

    /// The last day whose daily candle the job fetches: its range's end, except that a job
    /// the schedule queued stops before today. The schedule keeps days up to yesterday; its
    /// job reaches today only for the complete hours of an hourly coin, and today's day,
    /// provisional until midnight, would cost a CoinGecko call every tick for nothing
    /// (a coin whose hours are built from CoinGecko's points still fetches it, for them).
    pub(super) fn last_day(&self) -> NaiveDate {
        let end = self.attempt.job.range.end();
        match self.today.pred_opt() {
            Some(yesterday) if self.attempt.job.trigger == Trigger::Schedule && end > yesterday => {
                yesterday
            }
            _ => end,
        }
    }

    /// The coin's days from `from` to `to` that have no final row.
    pub(super) async fn missing_days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NaiveDate>, JobError> {
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        patiently(|| gaps::missing_days(pool, symbol, from, to)).await
    }

    /// The windows of `days` (ascending) to ask CoinGecko for, at most `window_days` days
    /// each. A job the schedule queued leaves out a window whose every day CoinGecko has
    /// answered without a candle before (see [`empty_days`]), and notes those days in its
    /// shortfalls; a resting day inside a window asked anyway costs nothing more. A job
    /// asked for with the API or the CLI asks for every window.
    pub(super) async fn windows_to_ask(
        &mut self,
        days: &[NaiveDate],
        window_days: u32,
    ) -> Result<Vec<Window>, JobError> {
        let windows = windows_for_days(days, window_days);
        if self.attempt.job.trigger != Trigger::Schedule || windows.is_empty() {
            return Ok(windows);
        }
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        let (_, resting) =
            patiently(|| empty_days::without_resting(pool, symbol, days.to_vec())).await?;
        let rests = |day: &NaiveDate| resting.binary_search(day).is_ok();
        let (asked, rested): (Vec<Window>, Vec<Window>) = windows
            .into_iter()
            .partition(|window| window.days_iter().any(|day| !rests(&day)));
        let known = &mut self.shortfalls.rested;
        known.extend(rested.iter().flat_map(Window::days_iter));
        known.sort_unstable();
        known.dedup();
        Ok(asked)
    }

    /// The days of `from..=to` a forced job has still to ask `source` for: see
    /// [`gaps::days_to_force`].
    pub(super) async fn days_to_force(
        &self,
        (from, to): (NaiveDate, NaiveDate),
        source: domain::PriceSource,
    ) -> Result<Vec<NaiveDate>, JobError> {
        let (pool, job) = (&self.ingestor.pool, self.attempt.job);
        let since = job.created_at;
        patiently(|| gaps::days_to_force(pool, job.symbol, (from, to), since, source)).await
    }

    /// The one place an attempt learns the reach: what the source's refusal taught is
    /// remembered (once per attempt, for every process and later job), and the reach in
    /// force is read again.
    pub(super) async fn learn_reach(&mut self, days: u32) -> Result<(), JobError> {
        let (reach, pool) = (&self.ingestor.reach, &self.ingestor.pool);
        self.reach = if self.learned {
            patiently(|| reach.current(pool)).await?
        } else {
            self.learned = true;
            patiently(|| reach.learn(pool, days)).await?
        };
        Ok(())
    }

    /// A refusal within the reach this attempt learned: the plan serves less than the
    /// source said, and only the settings can say how much.
    pub(super) fn beyond_learned_reach(&self, window: &Window) -> JobError {
        JobError::Permanent(format!(
            "CoinGecko refused {}..{} as older than the plan serves (error 10012), even \
             within the reach it taught before ({} days). Set COINGECKO_HISTORY_DAYS to what \
             the plan serves and submit the job again.",
            window.start,
            window.end,
            self.reach.limit_days().unwrap_or_default()
        ))
    }
}
