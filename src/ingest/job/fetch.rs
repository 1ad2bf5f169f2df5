//! Step 1: fetch what the plan asks for, from the job's own source. When the source
//! teaches a reach, the windows not fetched are planned again within it, once. When the
//! month's credits run out, the rest is left for the report to name.

use std::ops::ControlFlow;

use chrono::NaiveDate;

use super::window::WindowEnd;
use super::{JobError, Outcome, Run, patiently};
use crate::domain::PriceSource as Source;
use crate::ingest::HOURLY_WINDOW_DAYS;
use crate::ingest::{PriceSource, SourceError, Window, windows_for_days};

/// How a batch of windows ended.
enum Batch {
    /// Every window was tried.
    Done,
    /// The attempt must stop.
    Stopped(Outcome),
    /// `window` was refused as beyond the plan's reach of `days`; `unfetched` windows
    /// (it included) were not fetched.
    BeyondReach {
        window: Window,
        days: u32,
        unfetched: usize,
    },
}

impl<S: PriceSource> Run<'_, S> {
    /// Step 1; see the module's docs.
    pub(super) async fn fetch(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        loop {
            let windows = self.plan().await?;
            if let Some(why) = self.beyond_credits_left(windows.len()).await? {
                tracing::warn!(windows = windows.len(), "not started: {why}");
                self.shortfalls.out_of_credits = Some(why);
                return Ok(ControlFlow::Continue(()));
            }
            match self.fetch_all(&windows).await? {
                Batch::Done => return Ok(ControlFlow::Continue(())),
                Batch::Stopped(outcome) => return Ok(ControlFlow::Break(outcome)),
                Batch::BeyondReach {
                    window,
                    days,
                    unfetched,
                } => {
                    // Past midnight the plan's first day is a day later: the refusal may be
                    // the clock's, not the reach's, and the windows are planned again from
                    // the new day before a refusal within a learned reach fails the job.
                    let day_turned = self.turn_the_day();
                    if self.learned && !day_turned {
                        return Err(self.beyond_learned_reach(&window));
                    }
                    if !self.learned {
                        self.learn_reach(days).await?;
                    }
                    self.planned -= unfetched as i32;
                }
            }
        }
    }

    /// Why `windows` calls cannot be started, when the month's credits left (over every
    /// process) are fewer: a job is never started beyond what is left (INTERFACE.md,
    /// "Budgets and retention"). It was affordable when it was queued, but jobs queued
    /// beside it, or a tick, may have spent the credits while it waited; asking anyway
    /// would spend the rest of the month on a job that cannot finish.
    async fn beyond_credits_left(&self, windows: usize) -> Result<Option<String>, JobError> {
        let budget = self.ingestor.client.caller().budget();
        if windows == 0 || budget.monthly().is_none() {
            return Ok(None);
        }
        let figures = patiently(|| async { budget.month_figures().await.transpose() }).await?;
        let Some(figures) = figures else {
            return Ok(None);
        };
        let Some(left) = figures.left() else {
            return Ok(None);
        };
        if windows as i64 <= left {
            return Ok(None);
        }
        let (Some(limit), false) = (figures.limit, figures.refused) else {
            return Ok(Some(format!(
                "CoinGecko said this key's monthly credits of {} (UTC) are spent, so none of its \
                 {windows} CoinGecko windows was asked. The rest waits for the new month on {} (a \
                 later job or tick fetches it).",
                figures.month.label(),
                figures.month.resets_on()
            )));
        };
        Ok(Some(format!(
            "its {windows} CoinGecko windows need {windows} calls, but only {left} of the {limit} \
             monthly credits (COINGECKO_CALLS_PER_MONTH) were left for {} (UTC) when it began, \
             so none was asked: a job is never started beyond what is left. The rest waits for \
             the new month on {} (a later job or tick fetches it), or raise \
             COINGECKO_CALLS_PER_MONTH if the plan has more credits.",
            figures.month.label(),
            figures.month.resets_on()
        )))
    }

    /// How many days a window of the job's own source spans: `COINGECKO_CHUNK_DAYS`, at most
    /// 90 for a coin whose hours are built from CoinGecko's points, since a longer window
    /// is answered with daily points, of which no hour can be built.
    pub(super) fn window_days(&self) -> u32 {
        let days = self.source.window_days();
        if self.builds_hours_from_points() {
            days.min(HOURLY_WINDOW_DAYS)
        } else {
            days
        }
    }

    /// The windows to fetch within the reach, counted into the job's `chunks_total`:
    /// forced, those of the days no attempt of the job has written yet; otherwise those of
    /// the missing days.
    async fn plan(&mut self) -> Result<Vec<Window>, JobError> {
        let job = self.attempt.job;
        let window_days = self.window_days();
        let windows = match self.served_part() {
            // The runs of those days, as an unforced job plans its missing days: windows
            // cut from the range's first day would begin with a stub wherever the plan's
            // reach cuts the range (an extra call), and a resumed attempt would fetch again
            // the whole window around a day CoinGecko had no data for.
            Some((from, to)) if job.force => {
                let left = self.days_to_force((from, to), Source::CoinGecko).await?;
                windows_for_days(&left, window_days)
            }
            None if job.force => Vec::new(),
            _ => {
                let days = self.days_to_fetch().await?;
                self.windows_to_ask(&days, window_days).await?
            }
        };
        self.count_planned(windows.len()).await?;
        tracing::info!(
            windows = windows.len(),
            done_before = job.chunks_done,
            force = job.force,
            reach_days = self.reach.limit_days(),
            "fetching"
        );
        Ok(windows)
    }

    /// The days the plan serves that the job fetches, not forced: those missing, and for a
    /// coin whose hours are built from CoinGecko's points, those with missing hours (today
    /// included, for its complete hours).
    async fn days_to_fetch(&self) -> Result<Vec<NaiveDate>, JobError> {
        let mut days = match self.served_part() {
            Some((from, to)) => self.missing_days(from, to).await?,
            None => Vec::new(),
        };
        let range = self.attempt.job.range;
        if self.builds_hours_from_points()
            && let Some((from, to)) = self
                .reach
                .served_part(range.start(), range.end(), self.today)
        {
            days.extend(self.days_of_missing_hours(from, to).await?);
            days.sort_unstable();
            days.dedup();
        }
        Ok(days)
    }

    /// After step 4, for a coin whose product this attempt found unusable (so that step 1
    /// did not know to ask for the days of its missing hours): the days whose hours are
    /// still missing and whose points no window of this attempt brought are asked of
    /// CoinGecko, their hours built in their checkpoints. Those are days stored by an
    /// attempt before it (one killed during the check) or before the coin kept hours.
    pub(super) async fn hours_from_points(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        let Some(work) = self.hours.as_ref().filter(|work| work.found_unusable) else {
            return Ok(ControlFlow::Continue(()));
        };
        if self.shortfalls.out_of_credits.is_some() {
            return Ok(ControlFlow::Continue(()));
        }
        let asked = work.asked.clone();
        let range = self.attempt.job.range;
        let Some((from, to)) = self
            .reach
            .served_part(range.start(), range.end(), self.today)
        else {
            return Ok(ControlFlow::Continue(()));
        };
        let days: Vec<NaiveDate> = self
            .days_of_missing_hours(from, to)
            .await?
            .into_iter()
            .filter(|day| !asked.iter().any(|window| window.contains(*day)))
            .collect();
        if days.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let windows = windows_for_days(&days, self.source.window_days().min(HOURLY_WINDOW_DAYS));
        self.count_planned(windows.len()).await?;
        tracing::info!(
            windows = windows.len(),
            "fetching the points of hours still missing"
        );
        Ok(match self.fetch_all(&windows).await? {
            Batch::Stopped(outcome) => ControlFlow::Break(outcome),
            // Within the reach in force; a refusal leaves the hours missing, and the
            // report counts them.
            Batch::Done | Batch::BeyondReach { .. } => ControlFlow::Continue(()),
        })
    }

    /// Fetches `windows` in order, until one stops the attempt or is beyond the reach.
    async fn fetch_all(&mut self, windows: &[Window]) -> Result<Batch, JobError> {
        for (i, window) in windows.iter().enumerate() {
            match self.window(window).await? {
                WindowEnd::Stored(_) => self.shortfalls.answered.push(*window),
                WindowEnd::Failed(SourceError::OutOfCredits(why)) => {
                    self.shortfalls.out_of_credits = Some(why);
                    return Ok(Batch::Done);
                }
                WindowEnd::Failed(e) => return Err(e.into()),
                WindowEnd::Stop(outcome) => return Ok(Batch::Stopped(outcome)),
                WindowEnd::BeyondReach(days) => {
                    return Ok(Batch::BeyondReach {
                        window: *window,
                        days,
                        unfetched: windows.len() - i,
                    });
                }
            }
        }
        Ok(Batch::Done)
    }
}
