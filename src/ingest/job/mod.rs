//! One attempt of a job, from plan to outcome. The queue calls [`Ingestor::run`]; it
//! decides what to do with the outcome (finish, retry, hand back).
//!
//! The rooms, one concern each:
//! - `outcome`: how an attempt ends ([`Outcome`]) or fails ([`JobError`]);
//! - `run`: the attempt under way (`Run`): what it knows and has done, and what every
//!   step shares (the days missing, the windows planned, the reach learned);
//! - `window`: one window, as every step runs it: stop or cancel, ask, store;
//! - `checkpoint`: the transaction a window is stored in, behind the queue's
//!   [`Fence`];
//! - the steps, in the order [`Ingestor::run`] takes them: `fetch` (what the plan asks
//!   for), `fill` (what is still missing), `second_source` (the days older than the
//!   plan serves), `hour_windows` (the hours of an hourly coin from its exchange
//!   product), `fetch` again for the points of hours still missing when the product
//!   proved unusable, then `report` (the final word), whose sentences are in `messages`;
//! - `hours`: what a job of an hourly coin knows of its hours (where they come from, the
//!   CoinGecko points its windows brought, what fell short) and says of them at the end.
//!
//! A new step (another timeframe, say) is a file beside these: a `Run` method that plans
//! its windows, runs each through `Run::ask_and_store` with its own `Rows`, and notes
//! what fell short in `Shortfalls`; then one line in [`Ingestor::run`].

mod checkpoint;
mod fetch;
mod fill;
mod hour_windows;
mod hours;
mod messages;
mod outcome;
mod report;
mod run;
mod second_source;
mod window;

use std::ops::ControlFlow;

use chrono::Utc;
use sqlx::PgPool;

use super::Reach;
use super::fallback::SecondSource;
use super::source::{CoinGecko, PriceSource};
use crate::coingecko::{CoinGeckoClient, FirstDay};
use crate::domain::{Coin, DisputeRule, PlanReach};
use crate::shutdown::Shutdown;
use crate::store::{coins, ingestion_jobs::JobRecord};

pub use checkpoint::Fence;
pub use outcome::{JobError, Outcome};
use report::Shortfalls;
use run::{Run, patiently};

/// Everything a job needs: the database, the CoinGecko client, the window size, the
/// plan's reach and the second source.
#[derive(Clone)]
pub struct Ingestor {
    pub pool: PgPool,
    pub client: CoinGeckoClient,
    pub chunk_days: u32,
    pub reach: Reach,
    /// Where out-of-plan days come from; `None` with `FALLBACK_SOURCE=off`.
    pub second_source: Option<SecondSource>,
    /// `FALLBACK_MAX_DEVIATION_PERCENT` as the hour-by-hour check applies it.
    pub hour_check: DisputeRule,
}

/// One attempt's view of its job: the record as it was when the attempt began, the
/// fence its checkpoints pass, and the process's stop signal.
pub struct Attempt<'a> {
    pub job: &'a JobRecord,
    /// Whether this attempt still owns the job (the queue's lease); `None` only where no
    /// queue is involved.
    pub fence: Option<&'a dyn Fence>,
    /// Raised when the process shuts down.
    pub stop: &'a Shutdown,
}

impl Ingestor {
    /// Runs one attempt of a job (already marked running), in six steps: fetch what
    /// the plan asks for, fill what is still missing, fetch the days older than the plan
    /// serves from the second source, fetch an hourly coin's missing hours from its
    /// exchange product (or, when it proves unusable, the CoinGecko points of those no
    /// window of the attempt brought), and say what is left. Resumes from
    /// the checkpoint: not forced, the missing days are read again from the table, so
    /// windows already stored are not fetched again; forced, the windows before
    /// `chunks_done` are skipped. Days older than the plan's reach are never asked for;
    /// a 10012 answer teaches the reach, and the rest of the range is planned again
    /// within it.
    #[tracing::instrument(skip_all, fields(job_id = %attempt.job.id, symbol = %attempt.job.symbol, attempt = attempt.job.attempts))]
    pub async fn run(&self, attempt: Attempt<'_>) -> Result<Outcome, JobError> {
        let mut run = self.begin(attempt, self.coingecko()).await?;
        if let ControlFlow::Break(outcome) = run.fetch().await? {
            return Ok(outcome);
        }
        if let ControlFlow::Break(outcome) = run.fill().await? {
            return Ok(outcome);
        }
        if let ControlFlow::Break(outcome) = run.out_of_plan().await? {
            return Ok(outcome);
        }
        if let ControlFlow::Break(outcome) = run.exchange_hours().await? {
            return Ok(outcome);
        }
        if let ControlFlow::Break(outcome) = run.hours_from_points().await? {
            return Ok(outcome);
        }
        run.finish().await
    }

    /// CoinGecko, as the source the job's windows are asked of.
    pub fn coingecko(&self) -> CoinGecko {
        CoinGecko::new(self.client.clone(), self.chunk_days)
    }

    /// What an attempt starts from: its coin (still registered) and the reach in force.
    async fn begin<'a, S: PriceSource>(
        &'a self,
        attempt: Attempt<'a>,
        source: S,
    ) -> Result<Run<'a, S>, JobError> {
        let job = attempt.job;
        let coin = patiently(|| coins::get(&self.pool, job.symbol))
            .await?
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "{} is no longer a registered coin: register it again (PUT /api/v1/coins/{}) and submit the job again",
                    job.symbol, job.symbol
                ))
            })?
            .coin;
        let reach = patiently(|| self.reach.current(&self.pool)).await?;
        let coin = self.with_first_day(coin, reach, attempt.stop).await?;
        let hours = hours::HourWork::begin(self, job).await?;
        let began = Utc::now();
        Ok(Run {
            ingestor: self,
            attempt,
            source,
            coin,
            began,
            today: began.date_naive(),
            reach,
            planned: job.chunks_done,
            learned: false,
            shortfalls: Shortfalls::default(),
            product_checked: false,
            hours,
        })
    }

    /// `coin` with its first day, learned now when it was not known (it was registered
    /// under a plan that did not reach it) and the plan has no limit: one call, as
    /// registration makes, so that this job and the schedule stop asking for the days
    /// before it, every tick. A failed call (or a stop) leaves it unknown for a later job.
    async fn with_first_day(
        &self,
        mut coin: Coin,
        reach: PlanReach,
        stop: &Shutdown,
    ) -> Result<Coin, JobError> {
        if coin.first_day.is_some() || reach.limit_days().is_some() {
            return Ok(coin);
        }
        let asked = self.client.first_day(coin.coingecko_id.as_str(), None);
        match stop.unless_raised(asked).await {
            Some(Ok(FirstDay::On(day))) => {
                let learn = || coins::learn_first_day(&self.pool, coin.symbol, day);
                if patiently(learn).await? {
                    tracing::info!(first_day = %day, "learned the coin's first day");
                }
                coin.first_day = Some(day);
            }
            Some(Ok(FirstDay::BeforeThePlan | FirstDay::NoPrice)) | None => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not learn the coin's first day; a later job asks again");
            }
        }
        Ok(coin)
    }
}
